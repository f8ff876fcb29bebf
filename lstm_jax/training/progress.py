"""A progress bar for the training loops; tqdm is imported only when a bar is shown."""

from __future__ import annotations

from typing import Any


class _NoBar:
    """Stands in for a tqdm bar when ``progress=False``, so ``import lstm_jax`` never loads tqdm."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(show: bool, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar when ``show``, else an object with the same methods doing nothing."""
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(**kwargs)
