"""Running a cell over a sequence with ``jax.lax.scan``.

A cell step has the signature of a scan body, ``(carry, x_t) -> (carry, y_t)``, once its params
are bound. :func:`scan` adds what sequences need: batch-major or time-major layout, any number
of leading batch dimensions (or none), a default zero carry, reversal, and variable lengths.

Variable lengths: ``lengths`` gives each example's number of valid steps; the rest are padding
at the end. Past its length an example's carry is frozen and its outputs are zero, so the final
carry is the one at its own last valid step. With ``reverse=True`` the padded steps come first
in processing order and are skipped the same way, so each example is read backwards from its
own last valid step: exactly what the backward half of a bidirectional layer needs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.core.checks import (
    Problems,
    check_features,
    check_float_array,
    check_params,
    check_shapes,
    is_array,
    is_concrete,
)

Carry = Any
Cell = Any

# Steps per loop iteration when ``unroll=None``, by JAX's default backend. Unrolling spreads the
# fixed cost of each iteration of XLA's while loop over several steps. On an NVIDIA H200, 8 steps
# made the LSTM training step 1.5-2.8x faster through autodiff and 1.3-1.9x through the
# hand-derived BPTT, and the forward pass 1.5-2.2x (B from 1 to 128, H from 50 to 1024;
# benchmarks/RESULTS.md). On XLA:CPU unrolling gave no consistent gain in the forward loop and
# made the backward loop slower from 4 steps on, so 1 there.
UNROLL_BY_BACKEND = {"gpu": 8}


def resolve_unroll(unroll: int | bool | None) -> int | bool:
    """``unroll``, or this backend's default when it is None (see ``UNROLL_BY_BACKEND``)."""
    return UNROLL_BY_BACKEND.get(jax.default_backend(), 1) if unroll is None else unroll


def scan(
    cell: Cell,
    params: Any,
    xs: jax.Array,
    carry: Carry | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool | None = None,
    recurrent_mask: jax.Array | None = None,
) -> tuple[Carry, jax.Array]:
    """Runs ``cell`` over the time axis of ``xs`` with ``jax.lax.scan``.

    Args:
      cell: a cell config (:class:`LSTMCell`, :class:`GRUCell`, :class:`SimpleRNNCell`, ...).
      params: the cell's params.
      xs: ``(..., T, I)`` (batch-major) or ``(T, ..., I)`` with ``time_major=True``.
      carry: the initial carry for batch ``...``; zeros when None.
      lengths: optional integer array of shape ``...`` with values in ``[0, T]``.
      reverse: process the sequence from its end. Outputs stay in input order: ``ys[t]``
        belongs to ``xs[t]``.
      time_major: the layout of ``xs`` and of the returned ``ys``.
      unroll: steps per loop iteration, passed to ``jax.lax.scan``. None (the default) picks
        per backend: 8 on GPU, 1 elsewhere (measured; see ``benchmarks/RESULTS.md``).
      recurrent_mask: optional ``(..., P)`` multiplier on ``h_{t-1}`` where it enters the
        recurrent product, the same at every step (variational dropout).

    Returns:
      ``(carry, ys)``: the final carry and the outputs, ``(..., T, P)`` (or ``(T, ..., P)``).

    Raises:
      TypeError / ValueError: at trace time, for non-float ``xs``, a feature size that does not
      match ``params``, a carry or ``lengths`` whose batch shape differs from that of ``xs``,
      non-integer ``lengths`` or (when concrete) values outside ``[0, T]``. Under ``jit``,
      where the values are not known, out-of-range lengths make every output NaN instead.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import LSTMCell, scan
      >>> cell = LSTMCell(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, ys = scan(cell, params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, carry.h.shape
      ((2, 5, 8), (2, 8))
    """
    T, batch_shape = check_sequence("scan", cell, params, xs, carry, lengths, time_major)
    if carry is None:
        carry = cell.initial_carry(batch_shape)
    xs_t = xs if time_major else jnp.moveaxis(xs, -2, 0)  # (T, ..., I)
    valid = None if lengths is None else _valid_steps(lengths, T)  # (T, ..., 1)

    def step(carry, inp):
        x, ok = inp
        new_carry, y = cell(params, carry, x, recurrent_mask=recurrent_mask)
        if ok is not None:
            new_carry = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_carry, carry)
            y = jnp.where(ok, y, jnp.zeros_like(y))
        return new_carry, y

    carry, ys = jax.lax.scan(
        step, carry, (xs_t, valid), reverse=reverse, unroll=resolve_unroll(unroll)
    )
    if lengths is not None:
        ys = ys + _nan_if_out_of_range(lengths, T, ys.dtype)  # (T, ..., P)
    return carry, (ys if time_major else jnp.moveaxis(ys, 0, -2))


def _valid_steps(lengths: jax.Array, T: int) -> jax.Array:
    """``(T, ..., 1)`` booleans: step t of an example is valid iff t < its length."""
    t = jnp.arange(T, dtype=lengths.dtype).reshape((T,) + (1,) * lengths.ndim)
    return (t < lengths[None])[..., None]


def _nan_if_out_of_range(lengths: jax.Array, T: int, dtype) -> jax.Array:
    """0 where every length is in [0, T], NaN otherwise (a loud signal under jit)."""
    bad = jnp.any((lengths < 0) | (lengths > T))
    return jnp.where(bad, jnp.array(jnp.nan, dtype), jnp.array(0, dtype))


def check_sequence(where, cell, params, xs, carry, lengths, time_major):
    """Validates a sequence call; returns ``(T, batch_shape)``."""
    p = Problems(where)
    layout = "(T, ..., input_size)" if time_major else "(..., T, input_size)"
    input_size = check_params(p, cell, params, cell.params_type)
    T, batch_shape = None, None
    if check_float_array(p, "xs", xs, 2, layout):
        if check_features(p, cell, "xs", xs, input_size):
            T = xs.shape[0] if time_major else xs.shape[-2]
            batch_shape = xs.shape[1:-1] if time_major else xs.shape[:-2]
            if carry is not None:
                check_shapes(
                    p,
                    "carry",
                    carry,
                    cell.carry_shapes(batch_shape),
                    f"batch {batch_shape} of `xs`",
                )
            check_lengths(p, lengths, T, batch_shape)
    p.raise_if_any()
    return T, batch_shape


def check_lengths(p: Problems, lengths: Any, T: int, batch_shape: tuple[int, ...]) -> None:
    if lengths is None:
        return
    if not is_array(lengths) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        got = getattr(lengths, "dtype", type(lengths).__name__)
        p.type(f"`lengths` must be an integer array of shape {batch_shape}; got {got}.")
        return
    if tuple(lengths.shape) != tuple(batch_shape):
        p.value(
            f"`lengths` must have the batch shape of `xs`, {batch_shape}; "
            f"got lengths.shape={lengths.shape}."
        )
        return
    if is_concrete(lengths):
        values = np.asarray(lengths)  # concrete: plain NumPy, no trace even inside jit
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if lo < 0 or hi > T:
            p.value(f"`lengths` must lie in [0, T={T}]; got values from {lo} to {hi}.")
