"""Whole-sequence forms of the cells whose gates read only ``x_t``.

:func:`parallel_scan` takes the arguments of :func:`lstm_jax.scan` (minus ``unroll`` and
``recurrent_mask``, which these cells' gates never meet) and returns the same ``(carry, ys)``
for the cells that have a parallel form:

* :class:`lstm_jax.mLSTMCell`: the stabilised parallel form of Beck et al. (2024, appendix A.3),
  a decayed causal attention, ``O(T^2)`` time and memory; or, with ``chunk_size=L < T``, the
  chunkwise form: the parallel form inside each chunk of ``L`` steps and the recurrent
  state ``(C, n, m)`` carried from chunk to chunk, ``O(T L)`` time and ``O(T)`` memory.
* :class:`lstm_jax.minLSTMCell`, :class:`lstm_jax.minGRUCell`: ``h_t = a_t h_{t-1} + b_t`` as
  ``jax.lax.associative_scan`` over ``(log a_t, log b_t)`` pairs, combined with
  ``(A1, B1) . (A2, B2) = (A1 + A2, logaddexp(A2 + B1, B2))``, so every value stays a log of a
  number in range, at any ``T`` (Heinsen 2023; Blelloch 1990).

Variable lengths follow :func:`lstm_jax.scan`: a padded step becomes the identity of the
recurrence (forget gate 1, input gate 0), so the carry stops at each example's last valid step,
and its outputs are zero.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.cells.minrnn import minGRUCell, minLSTMCell
from lstm_jax.cells.mlstm import mLSTMCell, mLSTMInputs, mLSTMState
from lstm_jax.cells.slstm import cast
from lstm_jax.core.checks import Problems
from lstm_jax.core.eager import call_cached
from lstm_jax.core.vma import vary_like
from lstm_jax.sequence.scan import check_sequence

# The mLSTM's chunk length when ``chunk_size=None`` (a sequence this short or shorter is one
# chunk: the parallel form). At T = 256 on CPU, chunks of 64 beat the whole-sequence form in
# both the forward pass and training (benchmarks/RESULTS.md).
DEFAULT_CHUNK = 64

PARALLEL_CELLS = (mLSTMCell, minLSTMCell, minGRUCell)


def parallel_pays(cell: Any) -> bool:
    """Whether the layers' default runs ``cell`` through :func:`parallel_scan` instead of
    :func:`lstm_jax.scan`: for the mLSTM (exactly that class), whose chunkwise form trained
    4.2x and 4.1x faster than the recurrence through ``scan`` at B = 8, H = 256, T = 256 and
    1024 on a 2-core CPU, its ``jvp`` 1.4-1.8x faster, with 59 and 228 MiB of temporary
    memory instead of 411 and 1636 (its forward alone: 0.95x and 0.57x). The minLSTM and minGRU
    keep ``scan``: there their log-space scan ran the forward 1.6-2.5x and the ``jvp`` 3.1-3.3x
    slower and trained in 0.90-1.13x of the time (benchmarks/RESULTS.md, 2026-12-04)."""
    return type(cell) is mLSTMCell


def parallel_scan(
    cell: Any,
    params: Any,
    xs: jax.Array,
    carry: Any | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    chunk_size: int | None = None,
) -> tuple[Any, jax.Array]:
    """Runs ``cell`` over a whole sequence at once; equal to :func:`lstm_jax.scan`.

    Args:
      cell: an :class:`mLSTMCell`, :class:`minLSTMCell` or :class:`minGRUCell`.
      params: the cell's params.
      xs: ``(..., T, I)`` (batch-major) or ``(T, ..., I)`` with ``time_major=True``.
      carry: the initial carry for batch ``...``; zeros when None.
      lengths: optional integer array of shape ``...`` with values in ``[0, T]``.
      reverse: process each sequence from its last valid step back to its first, as
        :func:`lstm_jax.scan` does; outputs stay in input order.
      time_major: the layout of ``xs`` and of the returned ``ys``.
      chunk_size: the chunk length ``L``. mLSTM: of the chunkwise form; ``L >= T`` is the
        parallel form; None is ``L = 64`` (the parallel form up to ``T = 64``).
        minLSTM/minGRU: the associative scan runs within chunks of ``L`` steps and a loop
        carries the state across them, so compile time does not grow with ``T``; None is
        ``L = 16``. Every ``L`` gives the same numbers to float tolerance.

    Returns:
      ``(carry, ys)``, as :func:`lstm_jax.scan` returns them.

    Raises:
      TypeError: for a cell without a parallel form (its gates read ``h_{t-1}``, e.g.
        :class:`LSTMCell` or :class:`sLSTMCell`), and the errors of :func:`lstm_jax.scan`.
      ValueError: for a ``chunk_size`` that is not a positive int.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import mLSTMCell, parallel_scan
      >>> cell = mLSTMCell(8, num_heads=2)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 100, 3))
      >>> carry, ys = parallel_scan(cell, params, xs, lengths=jnp.array([100, 40]), chunk_size=16)
      >>> ys.shape, carry.m.shape
      ((2, 100, 8), (2, 2))
    """
    check_parallel(cell, chunk_size)
    T, batch_shape = check_sequence(
        "parallel_scan", cell, params, xs, carry, lengths, time_major, reverse=reverse
    )
    if carry is None:
        carry = cell.initial_carry(batch_shape)
    static = (cell, bool(reverse), bool(time_major), chunk_size)
    return call_cached(_run_parallel, static, params, xs, carry, lengths)


def _run_parallel(static, params, xs, carry, lengths):
    """The body of :func:`parallel_scan` once checked (jitted once per config and shapes)."""
    cell, reverse, time_major, chunk_size = static
    T = xs.shape[0] if time_major else xs.shape[-2]
    dt = jnp.promote_types(params.w_x.dtype, xs.dtype)  # float64 in, float64 out, as `scan`
    params, carry = cast((params, carry), dt)
    carry = vary_like(carry, carry, params, xs, lengths)  # under shard_map: vary as steps do
    xs_b = jnp.moveaxis(xs, 0, -2) if time_major else xs  # (..., T, I)
    valid = None
    if lengths is not None:
        t = jnp.arange(T, dtype=jnp.int32).reshape((1,) * lengths.ndim + (T,))
        valid = t < lengths.astype(jnp.int32)[..., None]  # (..., T)
        xs_b = jnp.where(valid[..., None], xs_b, jnp.zeros_like(xs_b))  # padding never counts
    if reverse:  # each sequence's valid steps reversed; the padding stays at its end
        xs_b = _reverse_valid(xs_b, lengths)
    if isinstance(cell, mLSTMCell):
        L = chunk_size or DEFAULT_CHUNK
        carry, ys = mlstm_chunkwise(cell, params, xs_b, carry, valid, min(L, T))
    else:
        carry, ys = min_rnn_scan(cell, params, xs_b, carry, valid, chunk_size or MIN_RNN_CHUNK)
    if reverse:  # the same permutation puts each output back at its input's step
        ys = _reverse_valid(ys, lengths)
    if lengths is not None:  # out-of-range lengths under jit: NaN carry and outputs, as `scan`
        bad = jnp.any((lengths < 0) | (lengths > T))
        carry, ys = jax.tree.map(
            lambda a: jnp.where(bad, jnp.full_like(a, jnp.nan), a), (carry, ys)
        )
    return carry, (jnp.moveaxis(ys, -2, 0) if time_major else ys)


def _reverse_valid(a, lengths):
    """``a: (..., T, F)`` with each sequence's first ``lengths`` steps in reverse order and the
    steps after them in place (every step reversed without ``lengths``); its own inverse."""
    if lengths is None:
        return jnp.flip(a, axis=-2)
    T = a.shape[-2]
    t = jnp.arange(T, dtype=jnp.int32).reshape((1,) * lengths.ndim + (T,))
    n = jnp.clip(lengths.astype(jnp.int32), 0, T)[..., None]  # out of range: NaN'd after
    order = jnp.where(t < n, n - 1 - t, t)  # (..., T)
    return jnp.take_along_axis(a, order[..., None], axis=-2)


MIN_RNN_CHUNK = 16  # minLSTM/minGRU: the chunk length; on CPU the fastest to compile and to run


def check_parallel(cell: Any, chunk_size: Any) -> None:
    p = Problems("parallel_scan")
    if not isinstance(cell, PARALLEL_CELLS):
        names = ", ".join(c.__name__ for c in PARALLEL_CELLS)
        p.type(
            f"`cell` must be a cell with a parallel form ({names}); got {type(cell).__name__}, "
            "whose gates read h_{t-1}, so its steps must run in order: use `lstm_jax.scan`."
        )
    bad_int = isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
    if chunk_size is not None and (bad_int or chunk_size < 1):
        p.value(f"`chunk_size` must be a positive int or None; got {chunk_size!r}.")
    p.raise_if_any()


def mlstm_chunkwise(cell, params, xs, carry: mLSTMState, valid, L: int):
    """Chunks of ``L`` steps: the parallel form in each, the state carried between them."""
    T, nb = xs.shape[-2], xs.ndim - 2
    if L >= T:
        return mlstm_parallel(cell, params, cell.project(params, xs), carry, valid)
    pad = -T % L
    if pad:
        xs = jnp.pad(xs, [(0, 0)] * nb + [(0, pad), (0, 0)])  # (..., T + pad, I)
        ok = jnp.ones(xs.shape[:-2] + (T,), bool) if valid is None else valid
        valid = jnp.pad(ok, [(0, 0)] * nb + [(0, pad)])  # padded steps are not valid
    u = cell.project(params, xs)  # fields (..., T + pad, ...)
    n_chunks = (T + pad) // L

    def chunks(a):  # (..., NC * L, *r) -> (NC, ..., L, *r)
        return jnp.moveaxis(a.reshape(*a.shape[:nb], n_chunks, L, *a.shape[nb + 1 :]), nb, 0)

    def body(state, inp):
        u_c, ok = inp
        return mlstm_parallel(cell, params, u_c, state, ok)

    inputs = (jax.tree.map(chunks, u), None if valid is None else chunks(valid))
    carry, ys = jax.lax.scan(body, carry, inputs)  # ys: (NC, ..., L, H)
    ys = jnp.moveaxis(ys, 0, nb).reshape(*ys.shape[1 : nb + 1], n_chunks * L, ys.shape[-1])
    return carry, ys[..., :T, :]


def mlstm_parallel(cell, params, u: mLSTMInputs, carry: mLSTMState, valid):
    """The stabilised parallel form over ``T`` steps, from an initial state ``carry``."""
    q, k, v = (jnp.moveaxis(a, -3, -2) for a in (u.q, u.k, u.v))  # (..., NH, T, D)
    i, log_f = jnp.swapaxes(u.i, -1, -2), jnp.swapaxes(u.log_f, -1, -2)  # (..., NH, T)
    if valid is not None:  # a padded step: forget gate 1, input gate 0
        ok = valid[..., None, :]  # (..., 1, T)
        i = jnp.where(ok, i, -jnp.inf)
        log_f = jnp.where(ok, log_f, jnp.zeros_like(log_f))
    T = q.shape[-2]
    F = jnp.cumsum(log_f, axis=-1)  # (..., NH, T) log of the forget gates' product up to t
    causal = jnp.tril(jnp.ones((T, T), bool))
    log_d = F[..., :, None] - F[..., None, :] + i[..., None, :]  # (..., NH, T, T) [t, s]
    log_d = jnp.where(causal, log_d, -jnp.inf)
    log_init = carry.m[..., None] + F  # (..., NH, T) weight of the initial state
    m = jnp.maximum(jnp.max(log_d, axis=-1), log_init)  # (..., NH, T) = recurrent m_t
    s = (q @ jnp.swapaxes(k, -1, -2)) * jnp.exp(log_d - m[..., None])  # (..., NH, T, T)
    w0 = jnp.exp(log_init - m)  # (..., NH, T)
    num = s @ v + w0[..., None] * (q @ carry.c)  # (..., NH, T, D)
    qn = jnp.sum(s, axis=-1) + w0 * jnp.sum(q * carry.n[..., None, :], axis=-1)  # (..., NH, T)
    h = cell.readout(
        params, u, jnp.moveaxis(num, -3, -2), *(jnp.swapaxes(a, -1, -2) for a in (qn, m))
    )
    if valid is not None:
        h = jnp.where(valid[..., None], h, jnp.zeros_like(h))  # (..., T, H)
    m_T = m[..., -1]  # (..., NH)
    w = jnp.exp(F[..., -1:] - F + i - m_T[..., None])  # (..., NH, T) weight of step s in C_T
    c0 = jnp.exp(log_init[..., -1] - m_T)  # (..., NH)
    c = c0[..., None, None] * carry.c + jnp.swapaxes(k * w[..., None], -1, -2) @ v
    n = c0[..., None] * carry.n + jnp.sum(k * w[..., None], axis=-2)
    return mLSTMState(c=c, n=n, m=m_T), h


def min_rnn_scan(cell, params, xs, h0: jax.Array, valid, L: int = MIN_RNN_CHUNK):
    """``h_t = a_t h_{t-1} + b_t``; ``-> (h_T, hs)``.

    The steps are cut into chunks of ``L``. Within every chunk at once, an associative scan on
    ``(log a, log b)`` gives ``h_t = A_t h_start + B_t`` (Heinsen 2023); a loop over the
    ``T / L`` chunks then carries ``h_start`` from chunk to chunk. The scan's depth, and so its
    compile time, depends on ``L`` and not on ``T``.
    """
    log_a, log_b = cell.log_coefficients(params, xs)  # (..., T, H) each
    if valid is not None:  # a padded step: a = 1, b = 0
        ok = valid[..., None]
        log_a = jnp.where(ok, log_a, jnp.zeros_like(log_a))
        log_b = jnp.where(ok, log_b, -jnp.inf)
    T, nb = xs.shape[-2], xs.ndim - 2
    if T == 0:
        return h0, jnp.zeros(xs.shape[:-1] + h0.shape[-1:], h0.dtype)
    L = min(L, T)
    pad = -T % L
    if pad:  # padded steps: a = 1, b = 0, so they carry h unchanged
        widths = [(0, 0)] * nb + [(0, pad), (0, 0)]
        log_a = jnp.pad(log_a, widths)
        log_b = jnp.pad(log_b, widths, constant_values=-jnp.inf)
    n_chunks = (T + pad) // L

    def chunks(a):  # (..., NC * L, H) -> (..., NC, L, H)
        return a.reshape(*a.shape[:nb], n_chunks, L, a.shape[-1])

    def combine(e1, e2):
        (a1, b1), (a2, b2) = e1, e2
        return a1 + a2, jnp.logaddexp(a2 + b1, b2)

    log_A, log_B = jax.lax.associative_scan(combine, (chunks(log_a), chunks(log_b)), axis=nb + 1)
    A, B = jnp.exp(log_A), jnp.exp(log_B)  # (..., NC, L, H): h_t = A_t h_start + B_t

    def across(h, ends):  # one chunk: its start state -> its end state
        a_end, b_end = ends
        return a_end * h + b_end, h

    ends = (jnp.moveaxis(A[..., -1, :], nb, 0), jnp.moveaxis(B[..., -1, :], nb, 0))
    carry, starts = jax.lax.scan(across, h0, ends)  # starts: (NC, ..., H)
    hs = A * jnp.moveaxis(starts, 0, nb)[..., None, :] + B  # (..., NC, L, H)
    hs = hs.reshape(*hs.shape[:nb], n_chunks * L, hs.shape[-1])[..., :T, :]
    if valid is not None:
        hs = jnp.where(valid[..., None], hs, jnp.zeros_like(hs))
    return carry, hs
