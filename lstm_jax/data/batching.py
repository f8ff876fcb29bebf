"""Batching: padding variable-length sequences, and deterministic mini-batch orders.

A data set is any pytree of arrays that share a leading axis of examples, ``n`` (e.g.
``(xs, ys)`` or a dict). Batches are that pytree indexed by a vector of example indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from lstm_jax.core.validate import check_bool, check_int


def pad_sequences(
    sequences: Sequence[Any], *, max_length: int | None = None, value: float = 0.0, dtype=None
) -> tuple[np.ndarray, np.ndarray]:
    """Stacks sequences of different lengths into one zero-padded batch.

    Args:
      sequences: ``B`` arrays of shape ``(T_b, ...)`` with equal trailing shapes.
      max_length: pad (or truncate) to this length; default ``max_b T_b``.
      value: the padding value.
      dtype: output dtype; default that of the first sequence.

    Returns:
      ``(padded, lengths)``: ``(B, T, ...)`` and ``(B,)`` int32, ready for the ``lengths``
      argument of :func:`lstm_jax.scan` and the layers.
    """
    if len(sequences) == 0:
        raise ValueError("`pad_sequences`: `sequences` must not be empty.")
    arrays = [np.asarray(s) for s in sequences]
    tail = arrays[0].shape[1:]
    bad = [i for i, a in enumerate(arrays) if a.ndim < 1 or a.shape[1:] != tail]
    if bad:
        raise ValueError(
            f"`pad_sequences`: every sequence must have shape (T, *{tail}); sequence {bad[0]} "
            f"has shape {arrays[bad[0]].shape}."
        )
    lengths = np.array([a.shape[0] for a in arrays], np.int32)
    T = int(lengths.max()) if max_length is None else max_length
    lengths = np.minimum(lengths, T)
    out = np.full((len(arrays), T, *tail), value, dtype or arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : lengths[i]] = a[: lengths[i]]
    return out, lengths


def num_examples(data: Any, where: str = "data") -> int:
    """The shared leading axis of every leaf of ``data``; a clear error when they differ."""
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError(f"`{where}` must hold at least one array; got {data!r}.")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        shapes = [tuple(np.shape(leaf)) for leaf in leaves]
        raise ValueError(
            f"`{where}`: every array must share the leading (examples) axis; got shapes {shapes}."
        )
    return int(sizes.pop())


def batch_order(n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True):
    """The example indices of every batch of one epoch, a list of int arrays.

    The order is a function of ``(seed, epoch)`` only, so a resumed run replays it exactly.
    The last batch holds the remainder (it may be smaller than ``batch_size``); ``n = 0``
    gives no batches.

    Raises:
      TypeError, ValueError: unless ``n``, ``seed`` and ``epoch`` are ints >= 0,
        ``batch_size`` an int >= 1 and ``shuffle`` a bool.
    """
    n = check_int("batch_order", "n", n, minimum=0)
    batch_size = check_int("batch_order", "batch_size", batch_size)
    seed = check_int("batch_order", "seed", seed, minimum=0)
    epoch = check_int("batch_order", "epoch", epoch, minimum=0)
    if check_bool("batch_order", "shuffle", shuffle):
        idx = np.random.default_rng([seed, epoch]).permutation(n)
    else:
        idx = np.arange(n)
    return [idx[i : i + batch_size] for i in range(0, n, batch_size)]


def take(data: Any, idx: np.ndarray) -> Any:
    """The examples ``idx`` of every array of ``data``."""
    return jax.tree.map(lambda a: a[idx], data)


def split_last(data: Any, fraction: float, where: str = "fit") -> tuple[Any, Any]:
    """Splits off the last ``fraction`` of examples (chronological for ordered windows)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`{where}`: `val_fraction` must be in (0, 1); got {fraction!r}.")
    n = num_examples(data, "train_data")
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"`{where}`: `val_fraction={fraction}` of {n} examples leaves an empty split."
        )
    return take(data, np.arange(n - n_val)), take(data, np.arange(n - n_val, n))
