"""Synthetic sequence tasks: the long-memory benchmarks and small generated data sets.

Every generator is a pure function of a PRNG key (or an int seed) and static sizes, written
with ``jax.random``, so it runs under ``jit`` (sizes static) and ``vmap`` over keys.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lstm_jax.core.validate import check_float
from lstm_jax.data.keys import as_key, check_count


def adding_problem(key_or_seed, n: int, T: int) -> tuple[jax.Array, jax.Array]:
    """The adding problem (Hochreiter & Schmidhuber 1997; the variant of Le et al. 2015).

    Each example is a length-``T`` sequence of two channels: channel 0 holds values drawn
    uniformly from ``[0, 1)``; channel 1 is zero except for exactly two ones, one at a position
    drawn uniformly from the first half ``[0, T // 2)`` and one from the second half
    ``[T // 2, T)``. The target is the sum of the two marked values. Predicting the mean, 1.0,
    gives a mean squared error of ``1/6 ~ 0.167`` (the variance of a sum of two uniforms); a
    model that solves the task drives it towards 0.

    Args:
      key_or_seed: a PRNG key or an int seed.
      n: number of examples.
      T: sequence length, at least 2.

    Returns:
      ``(xs, ys)``: ``xs`` of shape ``(n, T, 2)`` float32, ``ys`` of shape ``(n, 1)`` float32.

    Examples:
      >>> from lstm_jax.data import adding_problem
      >>> xs, ys = adding_problem(0, n=4, T=50)
      >>> xs.shape, ys.shape, xs[..., 1].sum(axis=1).tolist()
      ((4, 50, 2), (4, 1), [2.0, 2.0, 2.0, 2.0])

    References:
      Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation 1997 (experiment 4).
      Le, Jaitly & Hinton, "A Simple Way to Initialize Recurrent Networks of Rectified Linear
      Units", arXiv:1504.00941, 2015.
    """
    key = as_key("adding_problem", key_or_seed)
    check_count("adding_problem", "n", n)
    check_count("adding_problem", "T", T, minimum=2)
    k_val, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_val, (n, T), jnp.float32)  # (n, T)
    half = T // 2
    first = jax.random.randint(k_first, (n, 1), 0, half)  # (n, 1)
    second = jax.random.randint(k_second, (n, 1), half, T)  # (n, 1)
    t = jnp.arange(T).reshape(1, T)  # (1, T)
    marks = ((t == first) | (t == second)).astype(jnp.float32)  # (n, T)
    xs = jnp.stack([values, marks], axis=-1)  # (n, T, 2)
    ys = jnp.sum(values * marks, axis=1, keepdims=True)  # (n, 1)
    return xs, ys


def copy_task(
    key_or_seed, n: int, T: int, *, n_symbols: int = 8, copy_length: int = 10
) -> tuple[jax.Array, jax.Array]:
    """The copy (memory) task of Arjovsky, Shah & Bengio 2016.

    An input sequence has length ``T + 2 * copy_length``: ``copy_length`` symbols drawn
    uniformly from ``1..n_symbols``, then ``T - 1`` blanks (token 0), a delimiter (token
    ``n_symbols + 1``) and ``copy_length`` more blanks. The target is blank everywhere except the
    last ``copy_length`` steps, which must reproduce the first ``copy_length`` input symbols.
    A memoryless model that outputs blanks and then guesses uniformly reaches a cross-entropy
    of ``copy_length * log(n_symbols) / (T + 2 * copy_length)`` nats per step
    (:func:`copy_task_baseline`).

    Args:
      key_or_seed: a PRNG key or an int seed.
      n: number of examples.
      T: the delay between the symbols and the delimiter, at least 1.
      n_symbols: alphabet size of the symbols to copy.
      copy_length: how many symbols to remember.

    Returns:
      ``(xs, ys)``: ``xs`` one-hot inputs of shape ``(n, T + 2 * copy_length, n_symbols + 2)``
      float32, and ``ys`` integer targets of shape ``(n, T + 2 * copy_length)`` int32 in
      ``[0, n_symbols]``.

    References:
      Arjovsky, Shah & Bengio, "Unitary Evolution Recurrent Neural Networks", ICML 2016.
    """
    key = as_key("copy_task", key_or_seed)
    check_count("copy_task", "n", n)
    check_count("copy_task", "T", T)
    check_count("copy_task", "n_symbols", n_symbols)
    check_count("copy_task", "copy_length", copy_length)
    L = copy_length
    symbols = jax.random.randint(key, (n, L), 1, n_symbols + 1, dtype=jnp.int32)  # (n, L)
    zeros = jnp.zeros((n, T - 1), jnp.int32)
    delim = jnp.full((n, 1), n_symbols + 1, jnp.int32)
    tokens = jnp.concatenate([symbols, zeros, delim, jnp.zeros((n, L), jnp.int32)], axis=1)
    ys = jnp.concatenate([jnp.zeros((n, T + L), jnp.int32), symbols], axis=1)  # (n, T + 2L)
    xs = jax.nn.one_hot(tokens, n_symbols + 2, dtype=jnp.float32)  # (n, T + 2L, n_symbols + 2)
    return xs, ys


def copy_task_baseline(T: int, *, n_symbols: int = 8, copy_length: int = 10) -> float:
    """Cross-entropy (nats per step) of the memoryless strategy on :func:`copy_task`."""
    return copy_length * math.log(n_symbols) / (T + 2 * copy_length)


def sine_classification(
    key_or_seed,
    n: int,
    T: int,
    *,
    n_classes: int = 3,
    min_length: int | None = None,
    noise: float = 0.3,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Variable-length sequence classification: which of ``n_classes`` frequencies is present?

    Example ``b`` of class ``k`` is ``sin(2 pi f_k t + phi_b) + noise * eps_{b,t}`` for
    ``t < lengths[b]`` and zero padding after, with ``f_k = (k + 1) / 20`` cycles per step, a
    uniform random phase ``phi_b`` and standard normal ``eps``. Lengths are drawn uniformly from
    ``[min_length, T]`` (``min_length`` defaults to ``T // 2``), so a model must use
    ``lengths`` (e.g. :func:`lstm_jax.last_step`) to read each example's own last state.

    Returns:
      ``(xs, lengths, labels)``: ``xs`` ``(n, T, 1)`` float32 zero-padded, ``lengths`` ``(n,)``
      int32, ``labels`` ``(n,)`` int32 in ``[0, n_classes)``.
    """
    where = "sine_classification"
    key = as_key(where, key_or_seed)
    check_count(where, "n", n)
    check_count(where, "T", T)
    check_count(where, "n_classes", n_classes, minimum=2)
    lo = max(1, T // 2) if min_length is None else min_length
    check_count(where, "min_length", lo)
    if lo > T:
        raise ValueError(f"`{where}`: `min_length` must be <= T={T}; got {lo}.")
    k_lab, k_phase, k_len, k_eps = jax.random.split(key, 4)
    labels = jax.random.randint(k_lab, (n,), 0, n_classes, dtype=jnp.int32)
    lengths = jax.random.randint(k_len, (n,), lo, T + 1, dtype=jnp.int32)
    phase = jax.random.uniform(k_phase, (n, 1), jnp.float32, 0.0, 2 * math.pi)  # (n, 1)
    freq = ((labels + 1).astype(jnp.float32) / 20.0)[:, None]  # (n, 1)
    t = jnp.arange(T, dtype=jnp.float32).reshape(1, T)  # (1, T)
    eps = jax.random.normal(k_eps, (n, T), jnp.float32)
    x = jnp.sin(2 * math.pi * freq * t + phase) + noise * eps  # (n, T)
    valid = jnp.arange(T).reshape(1, T) < lengths[:, None]  # (n, T)
    xs = jnp.where(valid, x, jnp.zeros_like(x))[..., None]  # (n, T, 1)
    return xs, lengths, labels


def synthetic_series(
    key_or_seed,
    length: int,
    *,
    period: float = 24.0,
    trend: float = 0.0,
    noise: float = 0.1,
    n_features: int = 1,
) -> jax.Array:
    """A seasonal series with trend and AR(1) noise, for forecasting examples and tests.

    ``x_t = sin(2 pi t / period + phi_j) + trend * t / length + e_t`` with
    ``e_t = 0.8 e_{t-1} + noise * eps_t``, one random phase ``phi_j`` per feature ``j``.

    Returns:
      ``(length, n_features)`` float32.
    """
    where = "synthetic_series"
    key = as_key(where, key_or_seed)
    check_count(where, "length", length, minimum=2)
    check_count(where, "n_features", n_features)
    if not period > 0:
        raise ValueError(f"`{where}`: `period` must be > 0; got {period!r}.")
    check_float(where, "noise", noise, low=0.0)
    k_phase, k_eps = jax.random.split(key)
    phase = jax.random.uniform(k_phase, (1, n_features), jnp.float32, 0.0, 2 * math.pi)
    t = jnp.arange(length, dtype=jnp.float32)[:, None]  # (length, 1)
    eps = noise * jax.random.normal(k_eps, (length, n_features), jnp.float32)

    def ar1(e, x):
        e = 0.8 * e + x
        return e, e

    _, e = jax.lax.scan(ar1, jnp.zeros((n_features,), jnp.float32), eps)  # (length, F)
    seasonal = jnp.sin(2 * math.pi * t / period + phase)  # (length, F)
    return seasonal + (trend / length) * t + e
