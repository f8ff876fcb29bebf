"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology").

A sequence first lists ``pairs`` key-value pairs, ``k_1 v_1 k_2 v_2 ...``, then, in the rest of
its ``length`` steps, asks for the values of keys it listed: each query is a key at a random
position, the other positions hold the blank token ``0``. The target at a query's position is
the value that key was paired with; a model must recall it from ``2 * pairs`` or more steps
back, with many bindings stored at once. Keys are distinct within a sequence and drawn from
``1 .. vocab_size // 2 - 1``, values from ``vocab_size // 2 .. vocab_size - 1``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from lstm_jax.core.validate import check_int
from lstm_jax.data.keys import as_key

BLANK = 0


class Recall(NamedTuple):
    """A batch of MQAR sequences."""

    ids: np.ndarray  # (n, length) int32 inputs
    targets: np.ndarray  # (n, length) int32; the recalled value at query positions, else 0
    mask: np.ndarray  # (n, length) float32; 1 at query positions


def mqar(
    key_or_seed, n: int, *, vocab_size: int = 64, pairs: int = 8, queries: int | None = None,
    length: int | None = None,
) -> Recall:  # fmt: skip
    """``n`` MQAR sequences.

    Args:
      key_or_seed: a PRNG key or an int seed.
      n: the number of sequences.
      vocab_size: ``V``; keys come from ``1 .. V//2 - 1``, values from ``V//2 .. V - 1``.
      pairs: ``K``, key-value pairs listed per sequence (at most ``V//2 - 1``).
      queries: keys asked per sequence, each one of the ``K`` (default ``K``; at most ``K``,
        drawn without repetition).
      length: ``T`` (default ``4 * K``); at least ``2 * K + queries``.

    Returns:
      a :class:`Recall` of ``(n, T)`` arrays.
    """
    n = check_int("mqar", "n", n, minimum=1)
    V = check_int("mqar", "vocab_size", vocab_size, minimum=4)
    K = check_int("mqar", "pairs", pairs, minimum=1)
    if K > V // 2 - 1:
        raise ValueError(
            f"`mqar`: `pairs` must be at most vocab_size // 2 - 1 = {V // 2 - 1} (distinct "
            f"keys); got pairs={K} with vocab_size={V}."
        )
    Q = K if queries is None else check_int("mqar", "queries", queries, minimum=1)
    if Q > K:
        raise ValueError(f"`mqar`: `queries` must be at most pairs={K}; got {Q}.")
    T = 4 * K if length is None else check_int("mqar", "length", length, minimum=1)
    if T < 2 * K + Q:
        raise ValueError(
            f"`mqar`: `length` must be at least 2 * pairs + queries = {2 * K + Q}; got {T}."
        )
    key = as_key("mqar", key_or_seed)
    rng = np.random.default_rng(int(jax.random.bits(key, (), np.uint32)))
    half = V // 2
    keys = np.argsort(rng.random((n, half - 1)), axis=1)[:, :K] + 1  # distinct, in 1..half-1
    values = rng.integers(half, V, size=(n, K))
    ids = np.zeros((n, T), np.int32)
    ids[:, 0 : 2 * K : 2], ids[:, 1 : 2 * K : 2] = keys, values
    asked = np.argsort(rng.random((n, K)), axis=1)[:, :Q]  # which pairs are asked
    where = np.sort(np.argsort(rng.random((n, T - 2 * K)), axis=1)[:, :Q], axis=1) + 2 * K
    rows = np.arange(n)[:, None]
    ids[rows, where] = np.take_along_axis(keys, asked, axis=1)
    targets = np.zeros((n, T), np.int32)
    targets[rows, where] = np.take_along_axis(values, asked, axis=1)
    mask = np.zeros((n, T), np.float32)
    mask[rows, where] = 1.0
    return Recall(ids, targets, mask)


__all__ = ["BLANK", "Recall", "mqar"]
