"""Running a cell over a sequence with ``jax.lax.scan``.

A cell step has the signature of a scan body, ``(carry, x_t) -> (carry, y_t)``, once its params
are bound. :func:`scan` adds what sequences need: batch-major or time-major layout, any number
of leading batch dimensions (or none), a default zero carry, reversal, and variable lengths. It
works for any cell of the protocol (:class:`lstm_jax.Cell`): the time axis sits just before the
cell's ``feature_axes`` (one for vectors, three for ConvLSTM frames ``(Hs, Ws, C)``).

Variable lengths: ``lengths`` gives each example's number of valid steps; the rest are padding
at the end. Past its length an example's carry is frozen and its outputs are zero, so the final
carry is the one at its own last valid step. Padded inputs never reach the cell (they are
replaced by zeros first), so NaN or inf padding cannot leak into gradients. With
``reverse=True`` the padded steps come first in processing order and are skipped the same way,
so each example is read backwards from its own last valid step: exactly what the backward half
of a bidirectional layer needs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.core import protocol
from lstm_jax.core.checks import (
    Problems,
    check_features,
    check_float_array,
    check_params,
    check_shapes,
)
from lstm_jax.core.eager import call_cached
from lstm_jax.core.validate import check_bool, check_unroll
from lstm_jax.core.vma import vary_like
from lstm_jax.sequence.lengths import (
    check_lengths,
    expand_to,
    out_of_range,
    poison,
    valid_steps,
)

Carry = Any
Cell = Any

# Steps per loop iteration when ``unroll=None``, by JAX's default backend. Unrolling spreads the
# fixed cost of each iteration of XLA's while loop over several steps; measured in
# benchmarks/RESULTS.md (GPU: 8 steps were fastest; CPU: no consistent gain, so 1).
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
      cell: any cell of the protocol (:class:`LSTMCell`, :class:`GRUCell`, a user's own, ...).
      params: the cell's params.
      xs: ``(..., T, *F)`` (batch-major) or ``(T, ..., *F)`` with ``time_major=True``, where
        ``F`` are the cell's feature axes (``(I,)`` for vectors, ``(Hs, Ws, C)`` for ConvLSTM).
      carry: the initial carry; zeros when None (in the dtype one step computes in).
      lengths: optional integer array of shape ``...`` with values in ``[0, T]``.
      reverse: process the sequence from its end. Outputs stay in input order: ``ys[t]``
        belongs to ``xs[t]``.
      time_major: the layout of ``xs`` and of the returned ``ys``.
      unroll: steps per loop iteration, passed to ``jax.lax.scan``. None (the default) picks
        per backend: 8 on GPU, 1 elsewhere (measured; see ``benchmarks/RESULTS.md``).
      recurrent_mask: optional multiplier on ``h_{t-1}`` where it enters the recurrent
        product, shaped like one step's ``y``, the same at every step (variational dropout);
        only for cells whose ``__call__`` takes ``recurrent_mask``.

    Returns:
      ``(carry, ys)``: the final carry and the outputs, ``(..., T, *P)`` (or ``(T, ..., *P)``),
      in the dtype the cell computes in (the promoted dtype of params and ``xs``).

    Raises:
      TypeError / ValueError: before tracing, for an object that is not a cell, non-float
      ``xs``, a feature size that does not match ``params``, a carry or ``lengths`` whose batch
      shape differs from that of ``xs``, a carry whose dtype differs from the one the step
      computes in, non-integer ``lengths`` or (when concrete) values outside ``[0, T]``. Under
      ``jit``, where the values are not known, out-of-range lengths make every output and the
      returned carry NaN instead.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import LSTMCell, scan
      >>> cell = LSTMCell(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, ys = scan(cell, params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, carry.h.shape
      ((2, 5, 8), (2, 8))
    """
    check_sequence(
        "scan",
        cell,
        params,
        xs,
        carry,
        lengths,
        time_major,
        reverse=reverse,
        unroll=unroll,
        recurrent_mask=recurrent_mask,
    )
    static = ScanConfig(cell, bool(reverse), bool(time_major), resolve_unroll(unroll))
    return call_cached(run_scan, static, params, xs, carry, lengths, recurrent_mask)


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """The static part of a :func:`scan` call (hashable: the key of its compiled cache)."""

    cell: Any
    reverse: bool = False
    time_major: bool = False
    unroll: int | bool = 1


def run_scan(static: ScanConfig, params, xs, carry, lengths, recurrent_mask):
    """The body of :func:`scan` once its arguments are checked (traceable, no validation)."""
    cell, fa = static.cell, protocol.feature_axes(static.cell)
    xs_t = xs if static.time_major else jnp.moveaxis(xs, -(fa + 1), 0)  # (T, ..., *F)
    T = xs_t.shape[0]
    carry = matched_carry("scan", cell, params, carry, xs_t, recurrent_mask)
    carry = vary_like(carry, carry, params, xs_t, lengths, recurrent_mask)  # under shard_map
    valid = None if lengths is None else valid_steps(lengths, T)  # (T, ...)

    def step(carry, inp):
        x, ok = inp
        if ok is not None:  # padding never reaches the cell: finite gradients whatever it holds
            x = jnp.where(expand_to(ok, x), x, jnp.zeros_like(x))
        new_carry, y = call_cell(cell, params, carry, x, recurrent_mask)
        if ok is not None:
            new_carry = jax.tree.map(
                lambda n, o: jnp.where(expand_to(ok, n), n, o), new_carry, carry
            )
            y = jnp.where(expand_to(ok, y), y, jnp.zeros_like(y))
        return new_carry, y

    carry, ys = jax.lax.scan(
        step, carry, (xs_t, valid), reverse=static.reverse, unroll=static.unroll
    )
    if lengths is not None:
        bad = out_of_range(lengths, T)
        carry, ys = poison(carry, bad), poison(ys, bad)
    return carry, (ys if static.time_major else jnp.moveaxis(ys, 0, -(fa + 1)))


def call_cell(cell, params, carry, x, recurrent_mask=None):
    """One step, passing ``recurrent_mask`` only when there is one."""
    if recurrent_mask is None:
        return cell(params, carry, x)
    return cell(params, carry, x, recurrent_mask=recurrent_mask)


def matched_carry(where, cell, params, carry, xs_t, recurrent_mask=None):
    """The initial carry in the dtypes one step returns; a clear error when a given one differs.

    A default (zero) carry is cast to the step's dtypes, so float64 params and inputs run in
    float64 from a ``param_dtype=float32`` cell's ``initial_carry``. A carry the caller passed
    must already match: ``jax.lax.scan`` needs the carry's type fixed across steps.
    """
    given = carry is not None
    if not given:
        carry = cell.initial_carry(tuple(xs_t.shape[1:-1]))
    x0 = jax.ShapeDtypeStruct(xs_t.shape[1:], xs_t.dtype)
    out, _ = jax.eval_shape(lambda c, x: call_cell(cell, params, c, x, recurrent_mask), carry, x0)
    if jax.tree.structure(out) != jax.tree.structure(carry):
        raise TypeError(
            f"`{where}`: one step of {protocol.describe(cell)} returns a carry of structure "
            f"{jax.tree.structure(out)} from a carry of structure {jax.tree.structure(carry)}; "
            "a cell's step must return a carry of the structure it receives."
        )
    if not given:
        return jax.tree.map(lambda c, o: c.astype(o.dtype), carry, out)
    paths = jax.tree_util.tree_flatten_with_path(carry)[0]
    wrong = [
        f"carry{jax.tree_util.keystr(path)} is {leaf.dtype} but the step returns {o.dtype}"
        for (path, leaf), o in zip(paths, jax.tree.leaves(out), strict=True)
        if leaf.dtype != o.dtype
    ]
    if wrong:
        raise TypeError(
            f"`{where}`: `carry` has the wrong dtype for {protocol.describe(cell)}: "
            + "; ".join(wrong)
            + f" (the promoted dtype of the params and `xs`, {xs_t.dtype}). Cast the carry, "
            "e.g. `jax.tree.map(lambda a: a.astype(dtype), carry)`, or pass `carry=None`."
        )
    return carry


def check_sequence(
    where,
    cell,
    params,
    xs,
    carry,
    lengths,
    time_major,
    *,
    reverse=False,
    unroll=None,
    recurrent_mask=None,
):
    """Validates a sequence call; returns ``(T, batch_shape)``.

    ``batch_shape`` is one step's input shape without its last axis, the argument of the
    cell's ``initial_carry`` (for ConvLSTM it includes the frame's spatial axes).
    """
    p = Problems(where)
    missing = protocol.missing_members(cell)
    if missing:
        hint = (
            " It looks like a layer: call its `apply` instead."
            if callable(getattr(cell, "apply", None))
            else ""
        )
        p.type(
            f"`cell` must be a cell (with `init`, `initial_carry` and `__call__`, see "
            f"`lstm_jax.Cell`); got {type(cell).__name__}, which lacks {missing}.{hint}"
        )
        p.raise_if_any()
    check_bool(where, "time_major", time_major)
    check_bool(where, "reverse", reverse)
    check_unroll(where, unroll)
    fa = protocol.feature_axes(cell)
    per_step = "*F" if fa > 1 else "input_size"
    layout = f"(T, ..., {per_step})" if time_major else f"(..., T, {per_step})"
    T, step_batch = None, None
    own_type = getattr(cell, "params_type", None)
    builtin = isinstance(own_type, type) and hasattr(cell, "param_shapes")
    # The built-in cells know their input size from params, so both are checked at once.
    input_size = check_params(p, cell, params, own_type) if builtin else None
    if check_float_array(p, "xs", xs, fa + 1, layout):
        ok = check_features(p, cell, "xs", xs, input_size) if builtin else True
        input_size = xs.shape[-1]
        if ok and (builtin or _check_params(p, cell, params, input_size)):
            T = xs.shape[0] if time_major else xs.shape[-(fa + 1)]
            seq_batch = xs.shape[1:-fa] if time_major else xs.shape[: -(fa + 1)]
            spatial = xs.shape[-fa:-1]
            step_batch = tuple(seq_batch) + tuple(spatial)
            if carry is not None:
                check_shapes(
                    p,
                    "carry",
                    carry,
                    protocol.carry_shapes(cell, step_batch),
                    f"batch {step_batch} of `xs`",
                )
            check_lengths(p, lengths, T, tuple(seq_batch))
            _check_mask(p, cell, recurrent_mask, step_batch, input_size)
    p.raise_if_any()
    return T, step_batch


def _check_params(p: Problems, cell, params, input_size: int) -> bool:
    """Checks a user cell's ``params`` against ``init``'s shapes at the input size of ``xs``."""
    n = len(p.type_errors) + len(p.value_errors)
    why = f"{protocol.describe(cell)} at input_size={input_size} (the last axis of `xs`)"
    check_shapes(p, "params", params, protocol.param_shapes(cell, input_size), why)
    return len(p.type_errors) + len(p.value_errors) == n


def _check_mask(p: Problems, cell, mask, step_batch, input_size: int) -> None:
    if mask is None:
        return
    if not protocol.accepts_recurrent_mask(cell):
        p.type(
            f"`recurrent_mask` needs a cell whose `__call__` takes a `recurrent_mask` keyword; "
            f"{protocol.describe(cell)} does not."
        )
        return
    want = tuple(step_batch) + (protocol.output_size(cell, input_size),)
    if getattr(mask, "shape", None) != want:
        got = getattr(mask, "shape", type(mask).__name__)
        p.value(f"`recurrent_mask` must have the shape of one step's output, {want}; got {got}.")
