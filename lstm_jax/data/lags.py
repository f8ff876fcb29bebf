"""Long-time-lag tasks of Hochreiter & Schmidhuber (1997): experiments 2, 4 and 5.

* :func:`two_sequence_lag` (experiment 2a, noise-free, and 2b, "no local regularities"): the
  sequences ``(y, a_1, ..., a_{p-1}, y)`` and ``(x, a_1, ..., a_{p-1}, x)`` over ``p + 1``
  one-hot symbols; the last element repeats the first, ``p`` steps back.
* :func:`lag_adding_problem` (experiment 4) and :func:`lag_multiplication_problem`
  (experiment 5): a sequence of (value, marker) pairs of random length in ``[T, T + T/10]``;
  the target, given at the sequence end, combines the two marked values.

Every generator is a pure function of a PRNG key (or int seed) and static sizes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstm_jax.data.keys import as_key, check_count


def two_sequence_lag(key_or_seed, n: int, p: int, *, noisy: bool = False):
    """Experiment 2 of H&S 1997: remember the first of ``p + 1`` symbols for ``p`` steps.

    Symbols ``0 .. p-2`` are ``a_1 .. a_{p-1}``, ``p - 1`` is ``x`` and ``p`` is ``y``. A
    sequence is ``(c, a_1, ..., a_{p-1}, c)`` with ``c`` drawn from ``{x, y}``; with
    ``noisy=True`` (experiment 2b) the middle is instead ``p - 1`` symbols drawn uniformly
    from ``a_1 .. a_{p-1}`` afresh for every sequence, so nothing but the first symbol
    predicts the last. The model reads the first ``p`` elements and predicts the last.

    Returns:
      ``(xs, labels)``: ``xs`` ``(n, p, p + 1)`` one-hot float32 inputs and ``labels``
      ``(n,)`` int32 the last symbol, ``p - 1`` (``x``) or ``p`` (``y``).

    Examples:
      >>> from lstm_jax.data import two_sequence_lag
      >>> xs, labels = two_sequence_lag(0, n=2, p=5)
      >>> xs.shape, xs[:, 1:].argmax(-1).tolist(), (xs[:, 0].argmax(-1) == labels).tolist()
      ((2, 5, 6), [[0, 1, 2, 3], [0, 1, 2, 3]], [True, True])
    """
    key = as_key("two_sequence_lag", key_or_seed)
    check_count("two_sequence_lag", "n", n)
    check_count("two_sequence_lag", "p", p, minimum=2)
    k_class, k_mid = jax.random.split(key)
    labels = jnp.where(jax.random.bernoulli(k_class, 0.5, (n,)), p, p - 1).astype(jnp.int32)
    if noisy:
        middle = jax.random.randint(k_mid, (n, p - 1), 0, p - 1, dtype=jnp.int32)
    else:
        middle = jnp.broadcast_to(jnp.arange(p - 1, dtype=jnp.int32), (n, p - 1))
    tokens = jnp.concatenate([labels[:, None], middle], axis=1)  # (n, p)
    return jax.nn.one_hot(tokens, p + 1, dtype=jnp.float32), labels


def _marked_pairs(key, n: int, T: int, low: float, where: str):
    """Values, markers, lengths and the marked values X1, X2 of experiments 4 and 5."""
    check_count(where, "n", n)
    check_count(where, "T", T, minimum=22)
    Tmax = T + T // 10
    k_val, k_len, k_1, k_2 = jax.random.split(key, 4)
    values = jax.random.uniform(k_val, (n, Tmax), jnp.float32, low, 1.0)  # (n, Tmax)
    lengths = jax.random.randint(k_len, (n,), T, Tmax + 1, dtype=jnp.int32)  # (n,)
    first = jax.random.randint(k_1, (n,), 0, 10, dtype=jnp.int32)  # one of the first 10
    # one of the first T/2 - 1 pairs still unmarked: skip over `first`
    second = jax.random.randint(k_2, (n,), 0, T // 2 - 1, dtype=jnp.int32)
    second = second + (second >= first).astype(jnp.int32)
    t = jnp.arange(Tmax, dtype=jnp.int32)[None, :]  # (1, Tmax)
    marked = (t == first[:, None]) | (t == second[:, None])  # (n, Tmax)
    ends = (t == 0) | (t == lengths[:, None] - 1)  # first and final pair carry -1
    valid = t < lengths[:, None]
    markers = jnp.where(marked, 1.0, jnp.where(ends, -1.0, 0.0)).astype(jnp.float32)
    values = jnp.where(valid, values, 0.0)
    markers = jnp.where(valid, markers, 0.0)
    x1 = jnp.take_along_axis(values, first[:, None], axis=1)[:, 0]  # (n,)
    x2 = jnp.take_along_axis(values, second[:, None], axis=1)[:, 0]
    xs = jnp.stack([values, markers], axis=-1)  # (n, Tmax, 2)
    return xs, lengths, x1, x2, (first == 0, second == 0)


def lag_adding_problem(key_or_seed, n: int, T: int):
    """The adding problem as H&S 1997 define it (experiment 4), not the Le et al. variant.

    Each step is a pair (value drawn uniformly from ``[-1, 1]``, marker). One of the first 10
    pairs is marked 1.0 (its value is ``X1``), then one of the first ``T/2 - 1`` still
    unmarked pairs (``X2``); the first and the final pair carry the marker -1.0 unless marked,
    all others 0.0. When the very first pair is a marked one, its value counts as 0. The
    target at the sequence end is ``0.5 + (X1 + X2) / 4``, in ``[0, 1]``; a sequence counts
    as processed correctly when the absolute error there is below 0.04. Lengths are drawn
    uniformly from ``[T, T + T // 10]`` and sequences zero-padded to ``T + T // 10``, so the
    minimal lag between the second marked pair and the end is about ``T / 2``.

    Returns:
      ``(xs, lengths, ys)``: ``xs`` ``(n, T + T // 10, 2)`` float32, ``lengths`` ``(n,)``
      int32 and ``ys`` ``(n, 1)`` float32 targets (read the output at ``lengths - 1``).

    Examples:
      >>> from lstm_jax.data import lag_adding_problem
      >>> xs, lengths, ys = lag_adding_problem(0, n=3, T=100)
      >>> xs.shape, lengths.min() >= 100, lengths.max() <= 110, (xs[..., 1] == 1).sum(1).tolist()
      ((3, 110, 2), Array(True, dtype=bool), Array(True, dtype=bool), [2, 2, 2])
    """
    key = as_key("lag_adding_problem", key_or_seed)
    xs, lengths, x1, x2, at_0 = _marked_pairs(key, n, T, -1.0, "lag_adding_problem")
    x1, x2 = jnp.where(at_0[0], 0.0, x1), jnp.where(at_0[1], 0.0, x2)
    return xs, lengths, (0.5 + (x1 + x2) / 4.0)[:, None]


def lag_multiplication_problem(key_or_seed, n: int, T: int):
    """The multiplication problem of H&S 1997 (experiment 5).

    As :func:`lag_adding_problem`, but values are drawn from ``[0, 1]``, the value of the very
    first pair counts as 1.0 when it is a marked one, and the target is ``X1 * X2``.

    Returns:
      ``(xs, lengths, ys)`` as :func:`lag_adding_problem`.
    """
    key = as_key("lag_multiplication_problem", key_or_seed)
    xs, lengths, x1, x2, at_0 = _marked_pairs(key, n, T, 0.0, "lag_multiplication_problem")
    x1, x2 = jnp.where(at_0[0], 1.0, x1), jnp.where(at_0[1], 1.0, x2)
    return xs, lengths, (x1 * x2)[:, None]
