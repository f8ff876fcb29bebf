"""``lstm_scan``: :func:`lstm_jax.scan` for the LSTM with a hand-derived backward pass.

The article's ``LSTMCell`` has ``forward`` and ``backward(output_gradient)``. This is the
functional equivalent for a whole sequence: the forward pass is the same recurrence as
:func:`lstm_jax.scan`, and its vector-Jacobian product is written out by hand
(backpropagation through time, see :mod:`lstm_jax.sequence.bptt_core` for the equations)
with ``jax.custom_vjp``. ``jax.grad`` through :func:`lstm_scan` therefore runs the hand-written
backward, which computes the weight gradients with a few large matrix products after the
reverse recurrence instead of one small product per step.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.cells.lstm import LSTMCell, LSTMState
from lstm_jax.core.checks import Problems
from lstm_jax.sequence.bptt_core import Static, lstm_core
from lstm_jax.sequence.scan import (
    _nan_if_out_of_range,
    _valid_steps,
    check_sequence,
    resolve_unroll,
    scan,
)

_SUPPORTED_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))


def lstm_scan(
    cell: LSTMCell,
    params: Any,
    xs: jax.Array,
    carry: LSTMState | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool | None = None,
    recurrent_mask: jax.Array | None = None,
    checkpoint_every: int | None = None,
) -> tuple[LSTMState, jax.Array]:
    """Runs an LSTM over a sequence like :func:`lstm_jax.scan`, with the hand-derived BPTT.

    Same arguments, return value and errors as :func:`lstm_jax.scan`; outputs and gradients
    equal those of ``jax.grad`` through :func:`lstm_jax.scan` to float rounding.

    Args:
      cell: an :class:`LSTMCell` with sigmoid gates and tanh activation, with or without a
        forget gate and bias. Peepholes, ``proj_size``, ``layer_norm``, other activations and a
        compute ``dtype`` different from ``param_dtype`` raise a ``ValueError``: use
        :func:`lstm_jax.scan` for those.
      params: the cell's ``LSTMParams`` (``param_dtype`` float32 or float64).
      xs: ``(..., T, I)`` (batch-major) or ``(T, ..., I)`` with ``time_major=True``.
      carry: initial ``LSTMState(h: (..., H), c: (..., H))``; zeros when None.
      lengths: optional integer ``...``-shaped valid lengths in ``[0, T]``.
      reverse: process the sequence from its end (outputs stay in input order).
      time_major: the layout of ``xs`` and of the returned ``ys``.
      unroll: steps per loop iteration of the forward and backward recurrences; None picks per
        backend as in :func:`lstm_jax.scan` (8 on GPU, 1 elsewhere).
      recurrent_mask: optional ``(..., H)`` multiplier on ``h_{t-1}`` in the recurrent product.
      checkpoint_every: keep only every ``k``-th carry in the forward pass and recompute the
        gates of one ``k``-step segment at a time in the backward pass. Memory for the backward
        pass falls from ``O(T)`` stored steps to ``O(T/k + k)``, at the cost of a second
        forward pass; ``k ~ sqrt(T)`` minimises it. None (the default) stores every step.

    Returns:
      ``(carry, ys)``: the final ``LSTMState`` and the outputs ``(..., T, H)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import LSTMCell, lstm_scan, scan
      >>> cell = LSTMCell(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 5, 3))
      >>> loss = lambda p, f: jnp.sum(f(cell, p, xs)[1] ** 2)
      >>> g1, g2 = jax.grad(loss)(params, lstm_scan), jax.grad(loss)(params, scan)
      >>> bool(jnp.allclose(g1.w_h, g2.w_h, atol=1e-5))
      True
    """
    T, batch = check_sequence("lstm_scan", cell, params, xs, carry, lengths, time_major)
    check_supported("lstm_scan", cell, recurrent_mask, batch, checkpoint_every)
    if carry is None:
        carry = cell.initial_carry(batch)
    if T == 0:
        return scan(cell, params, xs, carry, lengths=lengths, time_major=time_major)
    H, dt, B = cell.hidden_size, params.w_h.dtype, math.prod(batch)
    xs_t = xs if time_major else jnp.moveaxis(xs, -2, 0)  # (T, ..., I)
    xs_t = xs_t.astype(dt).reshape(T, B, xs.shape[-1])  # (T, B, I)
    valid = None if lengths is None else _valid_steps(lengths, T).reshape(T, B, 1)
    mask = None if recurrent_mask is None else recurrent_mask.astype(dt).reshape(B, H)
    if reverse:
        xs_t = jnp.flip(xs_t, 0)
        valid = None if valid is None else jnp.flip(valid, 0)
    k = checkpoint_every
    if k is not None and T % k:  # pad with skipped steps to whole segments
        pad = k - T % k
        valid = jnp.ones((T, B, 1), bool) if valid is None else valid
        valid = jnp.concatenate([valid, jnp.zeros((pad, B, 1), bool)], 0)
        xs_t = jnp.concatenate([xs_t, jnp.zeros((pad,) + xs_t.shape[1:], dt)], 0)
    # A narrow input makes x_t W_x a small, overhead-bound product: stacking it with the
    # recurrent one was 1.6-2x faster on CPU at I=1 (H=50 to 256) and 10% at I=8, H=256, but
    # 10% slower at I=128, H=256 and I=256, H=512.
    stack = 4 * xs.shape[-1] <= H
    st = Static(
        cell.forget_gate, resolve_unroll(unroll), False, None if k is None or k >= T else k, stack
    )
    h0, c0 = carry.h.astype(dt).reshape(B, H), carry.c.astype(dt).reshape(B, H)
    hs, c_T = lstm_core(st, params.w_x, params.w_h, params.b, xs_t, h0, c0, valid, mask)
    h_T = hs[-1]  # skipped steps keep the carry, so the last row is the final h
    hs, valid = hs[:T], None if valid is None else valid[:T]
    ys = hs if valid is None else jnp.where(valid, hs, jnp.zeros_like(hs))  # (T, B, H)
    if reverse:
        ys = jnp.flip(ys, 0)
    ys = ys.reshape((T,) + tuple(batch) + (H,))
    if lengths is not None:
        ys = ys + _nan_if_out_of_range(lengths, T, ys.dtype)
    final = LSTMState(h=h_T.reshape(*batch, H), c=c_T.reshape(*batch, H))
    return final, (ys if time_major else jnp.moveaxis(ys, 0, -2))


def check_supported(where, cell, recurrent_mask=None, batch=(), checkpoint_every=None) -> None:
    """Raises a ``ValueError`` naming every option of ``cell`` the hand-derived BPTT lacks."""
    p = Problems(where)
    if not isinstance(cell, LSTMCell):
        p.type(f"`cell` must be an LSTMCell; got {type(cell).__name__}. Use `scan` instead.")
        p.raise_if_any()
    unsupported = [
        ("peephole", cell.peephole),
        ("proj_size", cell.proj_size is not None),
        ("layer_norm", cell.layer_norm),
        ("gate_activation", cell.gate_fn is not jax.nn.sigmoid),
        ("activation", cell.activation_fn is not jnp.tanh),
    ]
    for name, bad in unsupported:
        if bad:
            p.value(
                f"the hand-derived BPTT does not support `{name}={getattr(cell, name)!r}` "
                f"(only sigmoid gates and a tanh activation without peepholes, projection or "
                "layer norm); use `scan` (backward='autodiff') for this cell."
            )
    pdt, cdt = jnp.dtype(cell.param_dtype), jnp.dtype(cell.compute_dtype)
    if pdt not in _SUPPORTED_DTYPES or cdt != pdt:
        p.value(
            "the hand-derived BPTT supports float32 and float64 computed in param_dtype; got "
            f"`param_dtype={jnp.dtype(cell.param_dtype).name}`, "
            f"`dtype={jnp.dtype(cell.compute_dtype).name}`. Use `scan` for mixed precision."
        )
    if recurrent_mask is not None:
        want = tuple(batch) + (cell.hidden_size,)
        if getattr(recurrent_mask, "shape", None) != want:
            got = getattr(recurrent_mask, "shape", type(recurrent_mask).__name__)
            p.value(f"`recurrent_mask` must have shape {want}; got {got}.")
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, int)
        or checkpoint_every < 1
    ):
        p.value(f"`checkpoint_every` must be a positive int or None; got {checkpoint_every!r}.")
    p.raise_if_any()
