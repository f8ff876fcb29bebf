"""``RNN`` and ``Bidirectional``: Flax NNX's sequence wrappers, run by :func:`lstm_jax.scan`.

Same constructor and ``__call__`` keywords as ``flax.nnx.RNN`` / ``flax.nnx.Bidirectional``.
With a cell from :mod:`lstm_jax.nnx` the whole sequence runs through :func:`lstm_jax.scan`;
any other NNX cell with the ``(carry, x) -> (carry, y)`` protocol runs through a plain
``jax.lax.scan`` of its ``__call__`` (it must not mutate its state while stepping).

One deliberate difference with ``seq_lengths``: outputs at padded steps are zero here, while
Flax leaves whatever the recurrence produced by running on through the padding. Outputs at valid
steps, and the final carry of ``return_carry=True``, are the same (for lengths >= 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import rnglib

from lstm_jax.sequence.masks import reverse_padded
from lstm_jax.sequence.scan import scan

Array = jax.Array


def _concatenate(a: Array, b: Array) -> Array:
    """The default ``merge_fn``: ``[forward, backward]`` on the feature axis."""
    return jnp.concatenate([a, b], axis=-1)


def _carry_rngs(rngs: Any, where: str):
    if rngs is True:
        return rnglib.RngStream(0, tag="carry")
    if rngs is False:
        return nnx.data(None)
    if isinstance(rngs, rnglib.Rngs):
        return rngs.carry.fork()
    if isinstance(rngs, rnglib.RngStream):
        return rngs
    raise TypeError(f"`{where}`: `rngs` must be an nnx.Rngs, RngStream or bool; got {type(rngs)}.")


class RNN(nnx.Module):
    """Drop-in for ``flax.nnx.RNN``: runs ``cell`` over the time axis of ``inputs``.

    Args:
      cell: an NNX cell, e.g. :class:`lstm_jax.nnx.LSTMCell`.
      time_major: ``inputs`` are ``(T, *batch, F)`` instead of ``(*batch, T, F)``.
      return_carry: return ``(carry, outputs)`` instead of ``outputs``.
      reverse: process the sequence from its end (each example from its own last valid step
        when ``seq_lengths`` is given).
      keep_order: with ``reverse``, return outputs in input order (else in processing order).
      unroll: steps per loop iteration of the scan.
      state_axes, broadcast_rngs: accepted for compatibility; the params are read once and
        closed over, so nothing is split across steps.
      rngs: the stream that ``initialize_carry`` draws from when the cell has a ``carry_init``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from lstm_jax import nnx as ljnnx
      >>> rnn = ljnnx.RNN(ljnnx.GRUCell(3, 5, rngs=nnx.Rngs(0)), return_carry=True)
      >>> h, ys = rnn(jnp.ones((2, 7, 3)), seq_lengths=jnp.array([7, 4]))
      >>> h.shape, ys.shape
      ((2, 5), (2, 7, 5))
    """

    def __init__(
        self,
        cell: Any,
        *,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        unroll: int = 1,
        state_axes: Mapping[str, Any] | None = None,
        broadcast_rngs: Any = None,
        rngs: Any = True,
    ):
        self.cell = cell
        self.time_major = time_major
        self.return_carry = return_carry
        self.reverse = reverse
        self.keep_order = keep_order
        self.unroll = unroll
        self.state_axes = state_axes
        self.broadcast_rngs = broadcast_rngs
        self.rngs = _carry_rngs(rngs, "RNN")

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Any = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        rngs: Any = None,
    ):
        return_carry = self.return_carry if return_carry is None else return_carry
        time_major = self.time_major if time_major is None else time_major
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order
        lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
        carry = initial_carry
        if carry is None:
            rngs = self.rngs if rngs is None else rngs
            if isinstance(rngs, rnglib.Rngs):
                rngs = rngs.carry.fork()
            t = 0 if time_major else inputs.ndim - 2
            carry = self.cell.initialize_carry(inputs.shape[:t] + inputs.shape[t + 1 :], rngs)
        cell = self.cell
        if hasattr(cell, "core_cell"):  # an lstm_jax.nnx cell: the functional core runs it all
            c0 = cell.to_core_carry(carry)
            c, ys = scan(cell.core_cell(), cell.core_params(), inputs, c0, lengths=lengths,
                         reverse=reverse, time_major=time_major, unroll=self.unroll)  # fmt: skip
            carry = cell.from_core_carry(c)
        else:
            carry, ys = _scan_module(cell, carry, inputs, lengths, reverse, time_major, self.unroll)
        if reverse and not keep_order:  # Flax returns outputs in processing order
            ys = reverse_padded(ys, lengths, time_major=time_major)
        return (carry, ys) if return_carry else ys


def _scan_module(cell, carry, xs, lengths, reverse, time_major, unroll):
    """``jax.lax.scan`` of any NNX cell's ``__call__``, with the core's lengths semantics."""
    xs_t = xs if time_major else jnp.moveaxis(xs, -2, 0)  # (T, ..., F)
    T = xs_t.shape[0]
    valid = None
    if lengths is not None:
        t = jnp.arange(T, dtype=lengths.dtype).reshape((T,) + (1,) * lengths.ndim)
        valid = t < lengths[None]  # (T, ...)

    def step(c, inp):
        x, ok = inp
        new, y = cell(c, x)
        if ok is not None:
            keep = lambda n, o: jnp.where(ok.reshape(ok.shape + (1,) * (n.ndim - ok.ndim)), n, o)  # noqa: E731
            new = jax.tree.map(keep, new, c)
            y = keep(y, jnp.zeros_like(y))
        return new, y

    carry, ys = jax.lax.scan(step, carry, (xs_t, valid), reverse=reverse, unroll=unroll)
    return carry, (ys if time_major else jnp.moveaxis(ys, 0, -2))


class Bidirectional(nnx.Module):
    """Drop-in for ``flax.nnx.Bidirectional``: a forward and a backward RNN, outputs merged.

    The backward RNN is called with ``reverse=True, keep_order=True`` so both output sequences
    are in input order; ``merge_fn`` (default: concatenation, ``[forward, backward]``) joins them.
    With ``return_carry=True`` it returns ``((carry_forward, carry_backward), outputs)``.
    """

    def __init__(
        self,
        forward_rnn: Any,
        backward_rnn: Any,
        *,
        merge_fn: Callable[[Array, Array], Array] = _concatenate,
        time_major: bool = False,
        return_carry: bool = False,
        rngs: Any = True,
    ):
        self.forward_rnn = forward_rnn
        self.backward_rnn = backward_rnn
        self.merge_fn = merge_fn
        self.time_major = time_major
        self.return_carry = return_carry
        self.rngs = _carry_rngs(rngs, "Bidirectional")

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Any = None,
        rngs: Any = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,  # unused, as in Flax
        keep_order: bool | None = None,  # unused, as in Flax
    ):
        time_major = self.time_major if time_major is None else time_major
        return_carry = self.return_carry if return_carry is None else return_carry
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, rnglib.Rngs):
            rngs = rngs.carry
        c_f, c_b = (None, None) if initial_carry is None else initial_carry
        common = dict(rngs=rngs, seq_lengths=seq_lengths, return_carry=True, time_major=time_major)
        carry_f, ys_f = self.forward_rnn(inputs, initial_carry=c_f, reverse=False, **common)
        carry_b, ys_b = self.backward_rnn(
            inputs, initial_carry=c_b, reverse=True, keep_order=True, **common
        )
        ys = jax.tree.map(self.merge_fn, ys_f, ys_b)
        return ((carry_f, carry_b), ys) if return_carry else ys
