"""Sliding windows over a time series, chronological splits, and normalisation.

A series is ``(N,)`` (univariate) or ``(N, F)`` (``F`` features, e.g. CSV columns). Window
``i`` is ``series[i : i + window]``, shape ``(window, F)``; its target is the value
``horizon`` steps after the window's last step, ``series[i + window - 1 + horizon, targets]``.
This is the Keras example's layout: ``LSTM(50, input_shape=(100, 1))`` reads windows of 100
steps of one feature, and ``Dense(1)`` predicts the next value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Normalizer(NamedTuple):
    """Per-feature ``(x - mean) / std``; stored with a model (e.g. in a checkpoint config)."""

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)

    def to_dict(self) -> dict:
        """JSON-serialisable form, for a checkpoint's config."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def as_2d(series, where: str = "sliding_windows") -> np.ndarray:
    """``(N,)`` or ``(N, F)`` -> ``(N, F)`` float32, with a clear error otherwise."""
    x = np.asarray(series)
    if x.ndim not in (1, 2) or not np.issubdtype(x.dtype, np.number):
        raise ValueError(
            f"`{where}`: `series` must be a numeric array of shape (N,) or (N, features); got "
            f"shape {x.shape} and dtype {x.dtype}."
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"`{where}`: `series` holds NaN or inf; fill or drop missing values.")
    return x[:, None] if x.ndim == 1 else x


def fit_normalizer(series) -> Normalizer:
    """Mean and standard deviation of every feature (a constant feature gets ``std = 1``)."""
    x = as_2d(series, "fit_normalizer")
    if len(x) == 0:
        raise ValueError(
            f"`fit_normalizer`: `series` has 0 rows (shape {np.shape(series)}); the statistics "
            "need at least one step."
        )
    std = x.std(axis=0)
    return Normalizer(x.mean(axis=0), np.where(std > 0, std, 1.0).astype(np.float32))


def normalize(norm: Normalizer, x, columns: Sequence[int] | None = None) -> np.ndarray:
    """``(x - mean) / std`` over the last axis (restricted to ``columns`` when given)."""
    mean, std = _select(norm, columns, x, "normalize")
    return ((np.asarray(x, np.float32) - mean) / std).astype(np.float32)


def denormalize(norm: Normalizer, x, columns: Sequence[int] | None = None) -> np.ndarray:
    """Inverse of :func:`normalize`."""
    mean, std = _select(norm, columns, x, "denormalize")
    return (np.asarray(x, np.float32) * std + mean).astype(np.float32)


def _select(norm: Normalizer, columns, x, where):
    """The statistics of ``columns`` (all when None), checked against ``x``'s last axis."""
    if not isinstance(norm, Normalizer):
        raise TypeError(
            f"`{where}`: `norm` must be a Normalizer (from `fit_normalizer`); got "
            f"{type(norm).__name__}."
        )
    f = len(norm.mean)
    if columns is not None:
        cols = list(columns)
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in cols):
            raise TypeError(f"`{where}`: `columns` must be feature positions (ints); got {cols}.")
        bad = [c for c in cols if not -f <= c < f]
        if bad:
            raise ValueError(
                f"`{where}`: `columns` {bad} out of range for a normalizer of {f} features."
            )
        mean, std = norm.mean[cols], norm.std[cols]
    else:
        mean, std = norm.mean, norm.std
    shape = np.shape(x)
    if len(mean) != 1 and (not shape or shape[-1] != len(mean)):
        raise ValueError(
            f"`{where}`: `x` must have {len(mean)} features on its last axis (the "
            f"normalizer's{'' if columns is None else ' selected'} columns); got shape {shape}."
        )
    return mean, std


def sliding_windows(
    series,
    window: int,
    *,
    horizon: int = 1,
    targets: Sequence[int] | None = None,
    stride: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``window`` steps and the value ``horizon`` steps after it.

    Args:
      series: ``(N,)`` or ``(N, F)``.
      window: steps per input window, ``T``.
      horizon: how far ahead the target lies (1 = the next step).
      targets: feature indices to predict (default: every feature).
      stride: steps between the starts of consecutive windows.

    Returns:
      ``(xs, ys)``: ``(M, T, F)`` float32 windows and ``(M, len(targets))`` float32 targets,
      with ``M = (N - T - horizon) // stride + 1``.

    Examples:
      >>> import numpy as np
      >>> xs, ys = sliding_windows(np.arange(6.0), 3)
      >>> xs[:, :, 0].tolist(), ys[:, 0].tolist()
      ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], [3.0, 4.0, 5.0])
    """
    x = as_2d(series)
    n, f = x.shape
    targets = list(range(f)) if targets is None else list(targets)
    bad = [c for c in targets if not 0 <= c < f]
    for name, v in [("window", window), ("horizon", horizon), ("stride", stride)]:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`sliding_windows`: `{name}` must be a positive int; got {v!r}.")
    if bad:
        raise ValueError(f"`sliding_windows`: `targets` {bad} out of range for {f} features.")
    if n < window + horizon:
        raise ValueError(
            f"`sliding_windows`: a series of {n} steps is too short for window={window} and "
            f"horizon={horizon} (needs at least {window + horizon})."
        )
    starts = np.arange(0, n - window - horizon + 1, stride)  # (M,)
    idx = starts[:, None] + np.arange(window)[None, :]  # (M, T)
    xs = x[idx]  # (M, T, F)
    ys = x[starts + window - 1 + horizon][:, targets]  # (M, len(targets))
    return xs, ys


def split_series(series, fractions: Sequence[float] = (0.7, 0.15, 0.15)):
    """Chronological split of a series into consecutive parts (train, validation, test).

    Returns a list of ``(N_k, ...)`` arrays; the fractions are normalised to sum to 1.
    """
    x = np.asarray(series)
    total = _check_fractions("split_series", fractions)
    cuts = np.round(np.cumsum(fractions)[:-1] / total * len(x)).astype(int)
    return np.split(x, cuts)


def split_windows(
    series,
    window: int,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    *,
    horizon: int = 1,
    targets: Sequence[int] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Windows of ``series`` grouped by where their *target* falls in a chronological split.

    The series' steps are cut into consecutive parts by ``fractions`` (train, validation,
    test); each window goes to the part that holds its target step. Later parts' windows read
    the end of the previous part as context, and no target is ever in two parts.

    Returns:
      One ``(xs, ys)`` pair per fraction, as from :func:`sliding_windows`.
    """
    total = _check_fractions("split_windows", fractions)
    xs, ys = sliding_windows(series, window, horizon=horizon, targets=targets)
    n = len(np.asarray(series))
    bounds = np.round(np.cumsum(fractions) / total * n).astype(int)  # end of each part
    target_step = np.arange(len(xs)) + window - 1 + horizon  # (M,)
    part = np.searchsorted(bounds, target_step, side="right")  # (M,)
    out = [(xs[part == k], ys[part == k]) for k in range(len(fractions))]
    empty = [k for k, (x, _) in enumerate(out) if len(x) == 0]
    if empty:
        raise ValueError(
            f"`split_windows`: parts {empty} of fractions {list(fractions)} get no windows from "
            f"{n} steps with window={window}; use a longer series or a shorter window."
        )
    return out


def _check_fractions(where: str, fractions) -> float:
    """The sum of ``fractions``: one or more positive finite numbers."""
    ok = isinstance(fractions, Sequence) and not isinstance(fractions, str)
    if ok:
        ok = len(fractions) > 0 and all(
            isinstance(f, (int, float, np.integer, np.floating))
            and not isinstance(f, bool)
            and math.isfinite(f)
            and f > 0
            for f in fractions
        )
    if not ok:
        raise ValueError(
            f"`{where}`: `fractions` must be one or more positive numbers, e.g. (0.7, 0.15, "
            f"0.15); got {fractions!r}."
        )
    return float(sum(fractions))
