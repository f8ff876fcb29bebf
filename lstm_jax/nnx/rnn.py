"""``RNN`` and ``Bidirectional``: Flax NNX's sequence wrappers, with Flax's semantics.

``RNN`` runs any NNX cell (``(carry, x) -> (carry, y)``, ``initialize_carry``,
``num_feature_axes``) over the time axis as ``flax.nnx.RNN`` does: ``reverse`` flips each
sequence within its ``seq_lengths`` and runs forward, outputs come back in processing order
unless ``keep_order``, the cell's state moves through the loop as ``state_axes`` says (by
default everything is carried), streams named by ``broadcast_rngs`` are split once per call and
broadcast to every step, and with ``seq_lengths`` the steps past each sequence's end still run:
outputs there are whatever the recurrence computes, and ``return_carry=True`` returns the carry
at each sequence's last valid step.

How it runs: a cell of :mod:`lstm_jax.nnx` whose ``__call__`` is not overridden, with the
default ``state_axes`` and ``promote_dtype``, runs as one core cell (params read once) on the
layers' default path: its hand-derived rule where that covers the cell (sigmoid and tanh,
products in the carry's dtype) and pays on this backend, else :func:`lstm_jax.scan`. Any other
cell (a user's ``nnx.RNNCellBase``, a subclass that adds dropout) runs through ``nnx.scan`` of
its ``__call__``, so its ``nnx.Dropout`` streams and other state advance exactly as in Flax.
All give the same numbers, to float rounding.

One option beyond Flax: ``mask_padding=True`` gives this library's variable-length rule
instead: past each sequence's end the carry is frozen and outputs are zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx import rnglib
from flax.nnx.nn import dtypes

from lstm_jax.core.checks import is_concrete
from lstm_jax.core.validate import check_bool
from lstm_jax.nnx.base import CellBase
from lstm_jax.sequence.fast import fast_scan, fast_supported, forward_mode, rule_pays
from lstm_jax.sequence.scan import scan

Array = jax.Array
_scan = getattr(getattr(nnx, "compat", None), "scan", nnx.scan)  # graph-mode nnx.scan
_DEFAULT_AXES = nnx.StateAxes({...: nnx.Carry})


def carry_stream(rngs: Any, where: str, error: type[Exception]):
    """The ``rngs`` constructor argument of ``RNN`` / ``Bidirectional`` as Flax reads it."""
    if rngs is True:
        return rnglib.RngStream(0, tag="carry")
    if rngs is False:
        return nnx.data(None)
    if isinstance(rngs, rnglib.Rngs):
        return rngs.carry.fork()
    if isinstance(rngs, rnglib.RngStream):
        return rngs
    raise error(f"`{where}`: `rngs` must be an nnx.Rngs, RngStream or bool; got {type(rngs)}.")


def flip_sequences(xs: Array, lengths: Array | None, n_batch: int, time_major: bool) -> Array:
    """Reverses each sequence within its length, as Flax's RNN does before a reverse pass.

    Step ``t`` takes step ``(L - 1 - t) mod T``: the ``L`` valid steps reversed, then the
    padding, reversed too. Applied twice it is the identity.
    """
    axis = 0 if time_major else n_batch
    T = xs.shape[axis]
    if lengths is None:
        return jnp.flip(xs, axis=axis)
    t = jnp.arange(T, dtype=lengths.dtype)
    if time_major:
        idx = (lengths[None] - 1 - t.reshape((T,) + (1,) * n_batch)) % T  # (T, *batch)
    else:
        idx = (lengths[..., None] - 1 - t.reshape((1,) * n_batch + (T,))) % T  # (*batch, T)
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - idx.ndim))
    return jnp.take_along_axis(xs, idx, axis=axis)


def _check_lengths(where, seq_lengths, batch_dims, T):
    if seq_lengths is None:
        return None
    lengths = jnp.asarray(seq_lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(
            f"`{where}`: `seq_lengths` must be an integer array of shape {batch_dims}; "
            f"got dtype {lengths.dtype}."
        )
    if tuple(lengths.shape) != tuple(batch_dims):
        raise ValueError(
            f"`{where}`: `seq_lengths` must have the batch shape of `inputs`, {batch_dims}; "
            f"got seq_lengths.shape={lengths.shape}."
        )
    if is_concrete(lengths) and lengths.size:
        values = np.asarray(lengths)  # plain NumPy: no trace, even inside jit
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > T:
            raise ValueError(
                f"`{where}`: `seq_lengths` must lie in [0, T={T}]; got values from {lo} to {hi}."
            )
    return lengths


def _is_plain(cell) -> bool:
    """A cell of this package whose step is ours (so its carry dtype is known in advance)."""
    return isinstance(cell, CellBase) and type(cell).__call__ is CellBase.__call__


def _hold(ok, new, old, y):
    """Freeze the carry and zero the output where ``ok`` (``(*batch)``) is False."""

    def where(a, b):
        return jnp.where(ok.reshape(ok.shape + (1,) * (a.ndim - ok.ndim)), a, b)

    return jax.tree.map(where, new, old), where(y, jnp.zeros_like(y))


def _last_valid(carries, lengths):
    """The carry at step ``L - 1`` of each sequence from ``(T, *batch, ...)`` stacked carries
    (step ``T - 1`` when ``L = 0``, as Flax's negative index gives)."""

    def pick(a):
        idx = (lengths - 1) % a.shape[0]
        idx = idx.reshape((1,) + idx.shape + (1,) * (a.ndim - 1 - idx.ndim))
        return jnp.take_along_axis(a, idx, axis=0)[0]

    return jax.tree.map(pick, carries)


class RNN(nnx.Module):
    """Drop-in for ``flax.nnx.RNN``: runs ``cell`` over the time axis of ``inputs``.

    Args:
      cell: an NNX cell: one of :mod:`lstm_jax.nnx`, Flax's, or any ``nnx.RNNCellBase``.
      time_major: ``inputs`` are ``(T, *batch, *features)`` instead of
        ``(*batch, T, *features)`` (``features`` has ``cell.num_feature_axes`` axes).
      return_carry: return ``(carry, outputs)`` instead of ``outputs``.
      reverse: flip each sequence within its ``seq_lengths`` and run from its last valid step.
      keep_order: with ``reverse``, return outputs in input order (else in processing order).
      unroll: steps per loop iteration of the scan (Flax's default, 1).
      state_axes: how the cell's state moves through the steps, an ``nnx.StateAxes`` mapping
        filters to ``nnx.Carry``, an axis or None (broadcast); default
        ``nnx.StateAxes({...: nnx.Carry})``.
      broadcast_rngs: a filter of RNG streams (e.g. ``'recurrent_dropout'``) split once per call
        and shared by every step, so a dropout mask is the same at each step.
      rngs: the stream ``initialize_carry`` draws from: True (a fresh ``RngStream(0)``), an
        ``nnx.Rngs`` (its ``carry`` stream, forked), an ``RngStream``, or False (none).
      mask_padding: this library's variable-length rule instead of Flax's: past each
        sequence's length the carry is frozen and outputs are zero (default False, as Flax).

    Raises:
      ValueError: ``rngs`` of another kind (as Flax); bad ``seq_lengths`` at call time.
      TypeError: at call time, an ``initial_carry`` whose dtype a step of the cell would
        change (Flax's scan refuses it too).

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
        mask_padding: bool = False,
    ):
        self.cell = cell
        self.time_major = time_major
        self.return_carry = return_carry
        self.reverse = reverse
        self.keep_order = keep_order
        self.unroll = unroll
        self.rngs = carry_stream(rngs, "RNN", ValueError)
        self.state_axes = state_axes or nnx.StateAxes({...: nnx.Carry})
        self.broadcast_rngs = broadcast_rngs
        self.mask_padding = check_bool("RNN", "mask_padding", mask_padding)

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
        mask_padding: bool | None = None,
    ):
        """Runs the sequence; ``outputs``, or ``(carry, outputs)`` with ``return_carry``.

        The keywords override the constructor's for this call. ``seq_lengths`` is an integer
        array of shape ``*batch`` with values in ``[0, T]``; ``rngs`` replaces the stream the
        default carry is drawn from.
        """
        pick = lambda v, d: d if v is None else v  # noqa: E731
        return_carry = pick(return_carry, self.return_carry)
        time_major = pick(time_major, self.time_major)
        reverse, keep_order = pick(reverse, self.reverse), pick(keep_order, self.keep_order)
        mask = pick(mask_padding, self.mask_padding) and seq_lengths is not None
        nfa = self.cell.num_feature_axes
        time_axis = 0 if time_major else (inputs.ndim - nfa - 1) % inputs.ndim
        batch_dims = inputs.shape[1:-nfa] if time_major else inputs.shape[:time_axis]
        T = inputs.shape[time_axis]
        lengths = _check_lengths("RNN", seq_lengths, batch_dims, T)
        flip = lambda a: flip_sequences(a, lengths, len(batch_dims), time_major)  # noqa: E731
        if reverse:
            inputs = flip(inputs)
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, rnglib.Rngs):
            rngs = rngs.carry.fork()
        carry = initial_carry
        if carry is None:
            step_shape = inputs.shape[:time_axis] + inputs.shape[time_axis + 1 :]
            carry = self.cell.initialize_carry(step_shape, rngs)
        slice_carry = lengths is not None and return_carry and not mask
        fast = (
            _is_plain(self.cell)
            and self.cell.promote_dtype is dtypes.promote_dtype
            and self.state_axes == _DEFAULT_AXES
            and not slice_carry
        )
        run = self._run_core if fast else self._run_nnx
        carry, outputs = nnx.split_rngs(splits=1, only=self.broadcast_rngs, squeeze=True)(run)(
            self.cell, carry, inputs, time_major, time_axis, lengths, mask, slice_carry
        )
        if reverse and keep_order:
            outputs = flip(outputs)
        return (carry, outputs) if return_carry else outputs

    def _run_core(self, cell, carry, xs, time_major, time_axis, lengths, mask, slice_carry):
        """One core cell over the whole sequence, on the layers' default path: the core cell's
        hand-derived rule (:func:`lstm_jax.sequence.fast.fast_scan`) where it covers the cell
        and pays on this backend, else :func:`lstm_jax.scan`; the two agree to float rounding."""
        if xs.shape[-1] != cell.in_features:
            raise ValueError(
                f"`RNN`: `inputs` has {xs.shape[-1]} features but the cell expects "
                f"{cell.in_features} (its `in_features`); got inputs.shape={tuple(xs.shape)}."
            )
        core, params, xs, c0, out = cell.prepare(xs, carry)
        _check_carry_dtype(cell, carry, out)
        rule = (
            fast_supported(core, xs, c0)
            and rule_pays(core)
            and (rule_pays(core, forward=True) or not forward_mode(params, xs, c0))
        )
        c, ys = (fast_scan if rule else scan)(
            core, params, xs, c0, lengths=lengths if mask else None, time_major=time_major,
            unroll=self.unroll,
        )  # fmt: skip
        return jax.tree.map(lambda a: a.astype(out), cell.from_core_carry(c)), ys.astype(out)

    def _run_nnx(self, cell, carry, xs, time_major, time_axis, lengths, mask, slice_carry):
        """``nnx.scan`` of ``cell.__call__``: any cell, its state moved as ``state_axes`` say."""
        if _is_plain(cell):
            _check_carry_dtype(cell, carry, cell.prepare(jnp.zeros((), xs.dtype), carry)[-1])
        broadcast = nnx.All(nnx.RngState, self.broadcast_rngs)
        axes = nnx.StateAxes({broadcast: None, **self.state_axes})
        extra, in_axes = (), (axes, nnx.Carry, time_axis)
        if mask:  # (T, *batch): step t of a sequence is valid iff t < its length
            t = jnp.arange(xs.shape[time_axis], dtype=lengths.dtype)
            extra, in_axes = (t.reshape(t.shape + (1,) * lengths.ndim) < lengths,), in_axes + (0,)
        ys_axes = (0, time_axis) if slice_carry else time_axis

        def body(cell, carry, x, *valid):
            new, y = cell(carry, x)
            if valid:
                new, y = _hold(valid[0], new, carry, y)
            return new, ((new, y) if slice_carry else y)

        loop = _scan(body, in_axes=in_axes, out_axes=(nnx.Carry, ys_axes), unroll=self.unroll)
        carry, ys = loop(cell, carry, xs, *extra)
        if slice_carry:
            carries, ys = ys
            carry = _last_valid(carries, lengths)
        return carry, ys


def _check_carry_dtype(cell, carry, out) -> None:
    got = sorted({str(jnp.asarray(a).dtype) for a in jax.tree.leaves(carry)})
    if got != [str(out)]:
        raise TypeError(
            f"`RNN`: `initial_carry` has dtype {', '.join(got)}, but a step of "
            f"{type(cell).__name__} returns a {out} carry (param_dtype="
            f"{jnp.dtype(cell.param_dtype)}, dtype={cell.dtype}); a scan needs a carry of fixed "
            "type, as in flax.nnx.RNN. Build it with `initialize_carry` or cast it."
        )
