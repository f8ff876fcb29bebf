"""Stacked and bidirectional recurrent layers built from one cell config.

A :class:`StackedRNN` runs ``num_layers`` layers of the same cell, each layer reading the outputs
of the one below. A bidirectional layer runs a forward and a backward copy of the cell over its
input and concatenates their outputs on the last axis, ``[forward, backward]`` (PyTorch's and
Keras' ``concat`` order). With ``lengths`` the backward copy reads each example from its own
last valid step (see :func:`lstm_jax.scan`).

Params are a tuple with one :class:`LayerParams` per layer; the carry is a tuple with one
:class:`LayerState` per layer. Both are plain pytrees.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells.gru import GRUCell
from lstm_jax.cells.lstm import LSTMCell
from lstm_jax.cells.simple_rnn import SimpleRNNCell
from lstm_jax.core import protocol
from lstm_jax.core.checks import Problems, check_shapes
from lstm_jax.core.eager import call_cached
from lstm_jax.core.validate import check_bool, check_float, check_int, check_key, check_unroll
from lstm_jax.sequence.fast import fast_scan, fast_supported, forward_mode, rule_pays
from lstm_jax.sequence.lstm_scan import check_supported
from lstm_jax.sequence.masks import dropout as apply_dropout
from lstm_jax.sequence.parallel import parallel_pays, parallel_scan
from lstm_jax.sequence.scan import check_sequence, scan


class LayerParams(NamedTuple):
    """Params of one layer: the forward cell's, and the backward cell's when bidirectional."""

    forward: Any
    backward: Any | None = None


class LayerState(NamedTuple):
    """Carry of one layer, one cell carry per direction."""

    forward: Any
    backward: Any | None = None


@dataclasses.dataclass(frozen=True)
class StackedRNN:
    """``num_layers`` recurrent layers of ``cell``, optionally bidirectional, with dropout.

    Args:
      cell: the cell config every layer uses (its ``init`` gets each layer's input size).
      num_layers: number of stacked layers.
      bidirectional: run a backward copy of every layer and concatenate its outputs.
      dropout: drop rate on the inputs of layers 2..L (between layers), as in PyTorch's
        ``nn.LSTM(dropout=...)``. Applied only when ``apply`` gets a ``key``.
      recurrent_dropout: drop rate of a variational mask on ``h_{t-1}`` where it enters the
        recurrent product, one mask per sequence and layer (Gal & Ghahramani 2016). Only with
        a ``key``.
      time_major: inputs and outputs are ``(T, ..., F)`` instead of ``(..., T, F)``.
      unroll: steps per loop iteration, passed to ``jax.lax.scan``; None (the default) picks
        per backend: 8 on GPU, 1 elsewhere (see :func:`lstm_jax.scan`).
      backward: how derivatives are computed. ``"fast"`` (the default): the faster path for
        the cell, the cell's hand-derived rule (:func:`lstm_jax.sequence.fast.fast_scan`; LSTM,
        GRU and simple RNN cells with sigmoid/tanh, no peephole, projection or layer norm,
        computed in a float32 or float64 ``param_dtype`` that the inputs share) where it is
        faster, else autodiff through :func:`lstm_jax.scan`; on CPU a GRU below 512 hidden
        units takes autodiff, which measured faster there, and so does a layer called under
        ``jax.jvp``/``jax.jacfwd`` directly, whose forward mode ``scan`` runs faster on CPU
        (:func:`lstm_jax.sequence.fast.rule_pays`). An :class:`lstm_jax.mLSTMCell` runs its
        chunkwise form, :func:`lstm_jax.parallel_scan` (``unroll`` does not apply to it),
        whose training step measured about 4x faster than the step-by-step recurrence's, in a
        seventh of its memory (:func:`lstm_jax.sequence.parallel.parallel_pays`); a
        symbolic sequence length (``jax.export``) keeps the recurrence.
        ``"autodiff"``: always autodiff through
        :func:`lstm_jax.scan`, step by step (the reference). ``"bptt"``: the earlier name of
        ``"fast"``, kept for callers; it checks at construction that the cell is a supported
        LSTM. All give the same outputs and derivatives, in reverse and forward mode.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import lstm_jax as lj
      >>> rnn = lj.LSTM(16, num_layers=2, bidirectional=True)
      >>> params = rnn.init(jax.random.key(0), input_size=3)
      >>> carry, ys = rnn.apply(params, jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 3, 1]))
      >>> ys.shape, carry[-1].backward.h.shape
      ((4, 10, 32), (4, 16))
    """

    cell: Any
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    time_major: bool = False
    unroll: int | bool | None = None
    backward: str = "fast"

    def __post_init__(self):
        where = "StackedRNN"
        missing = protocol.missing_members(self.cell)
        if missing:
            raise TypeError(
                f"`{where}`: `cell` must be a cell (with `init`, `initial_carry` and `__call__`, "
                f"see `lstm_jax.Cell`); got {type(self.cell).__name__}, which lacks {missing}."
            )
        object.__setattr__(self, "num_layers", check_int(where, "num_layers", self.num_layers))
        for flag in ("bidirectional", "time_major"):
            object.__setattr__(self, flag, check_bool(where, flag, getattr(self, flag)))
        check_unroll(where, self.unroll)
        if self.recurrent_dropout and not protocol.accepts_recurrent_mask(self.cell):
            raise TypeError(
                f"`{where}`: `recurrent_dropout` needs a cell whose `__call__` takes a "
                f"`recurrent_mask` keyword; {protocol.describe(self.cell)} does not."
            )
        if self.backward not in ("fast", "autodiff", "bptt"):
            raise ValueError(
                "`StackedRNN`: `backward` must be 'fast', 'autodiff' or 'bptt'; "
                f"got {self.backward!r}."
            )
        if self.backward == "bptt":
            check_supported("StackedRNN", self.cell)
        for name in ("dropout", "recurrent_dropout"):
            rate = getattr(self, name)
            check_float(where, name, rate, low=0.0, high=1.0, high_open=True)

    @property
    def output_size(self) -> int:
        """Features of every output: the cell's output size, doubled when bidirectional."""
        return self.layer_output_size()

    def layer_output_size(self, input_size: int | None = None) -> int:
        """Features of a layer's outputs; a cell without ``output_size`` needs ``input_size``."""
        size = getattr(self.cell, "output_size", None)
        if not isinstance(size, int):
            if input_size is None:
                raise TypeError(
                    f"`StackedRNN.output_size`: {protocol.describe(self.cell)} has no "
                    "`output_size`; it is known once the input size is (after `init`)."
                )
            size = protocol.output_size(self.cell, input_size)
        return size * (2 if self.bidirectional else 1)

    def init(self, key: jax.Array, input_size: int) -> tuple[LayerParams, ...]:
        """One ``LayerParams`` per layer; layer ``l > 0`` reads ``output_size`` features."""
        key = check_key("StackedRNN.init", "key", key)
        params, size = [], check_int("StackedRNN.init", "input_size", input_size)
        for k in jax.random.split(key, self.num_layers):
            k_f, k_b = jax.random.split(k)
            backward = self.cell.init(k_b, size) if self.bidirectional else None
            params.append(LayerParams(self.cell.init(k_f, size), backward))
            size = self.layer_output_size(size)
        return tuple(params)

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> tuple[LayerState, ...]:
        def one():
            return self.cell.initial_carry(batch_shape)

        return tuple(
            LayerState(one(), one() if self.bidirectional else None) for _ in range(self.num_layers)
        )

    def apply(self, params, xs, carry=None, *, lengths=None, key=None):
        """Runs the stack over ``xs``.

        Args:
          params: from :meth:`init`.
          xs: ``(..., T, I)`` (or ``(T, ..., I)`` when ``time_major``).
          carry: initial carry from :meth:`initial_carry` (zeros when None).
          lengths: optional ``...``-shaped integer valid lengths.
          key: PRNG key for dropout; without it the layer is deterministic (inference).

        Returns:
          ``(carry, ys)``: the final carry of every layer, and the outputs of the last layer,
          ``(..., T, output_size)``: the order of ``jax.lax.scan`` and of the cells.
        """
        self._check(params, xs, carry, lengths)
        if key is not None:
            key = check_key(f"{type(self).__name__}.apply", "key", key)
        layer = self
        if (
            self.backward != "autodiff"
            and not parallel_pays(self.cell)  # its chunkwise form is the faster jvp too
            and not rule_pays(self.cell, forward=True)
            and forward_mode(params, xs, carry)
        ):  # a jvp around this call: scan's one-loop forward mode is the faster there
            layer = dataclasses.replace(self, backward="autodiff")
        return call_cached(StackedRNN._apply, layer, params, xs, carry, lengths, key)

    def _apply(self, params, xs, carry, lengths, key):
        """The body of :meth:`apply` once checked; jitted once per config for eager callers."""
        if carry is None:  # each scan makes its zero carry in the dtype its layer computes in
            carry = (LayerState(None, None),) * self.num_layers
        keys = self._layer_keys(key)
        h, new_carry = xs, []
        for layer, (p, c, k) in enumerate(zip(params, carry, keys, strict=True)):
            k_in, k_f, k_b = (None, None, None) if k is None else tuple(jax.random.split(k, 3))
            if layer > 0 and k_in is not None and self.dropout > 0:
                h = apply_dropout(k_in, h, self.dropout)
            c_f, y = self._run(p.forward, h, c.forward, lengths, False, k_f)
            c_b = None
            if self.bidirectional:
                c_b, y_b = self._run(p.backward, h, c.backward, lengths, True, k_b)
                y = jnp.concatenate([y, y_b], axis=-1)  # (..., T, 2P)
            h = y
            new_carry.append(LayerState(c_f, c_b))
        return tuple(new_carry), h

    def step(self, params, carry, x):
        """One time step through every layer: ``(carry, x) -> (carry, y)``.

        For autoregressive decoding and sampling, where each input depends on the previous
        output. Equals :meth:`apply` on a length-1 sequence: ``step(params, carry, x)`` is
        ``apply(params, x[..., None, :], carry)`` with the time axis dropped from ``ys``.
        No dropout (there is no ``key``): a step is an inference step.

        Args:
          params: from :meth:`init`.
          carry: from :meth:`initial_carry` or a previous step or ``apply``; zeros when None.
          x: ``(..., I)``, one step's input (the same layout whatever ``time_major`` is).

        Returns:
          ``(carry, y)``: the new carry of every layer, and the last layer's output
          ``(..., output_size)``.

        Raises:
          ValueError: for a bidirectional stack, whose backward direction needs the whole
            sequence.
        """
        where = f"{type(self).__name__}.step"
        if self.bidirectional:
            raise ValueError(
                f"`{where}`: a bidirectional stack cannot run one step at a time (its backward "
                "direction reads the sequence from its end); use `apply` on the whole sequence, "
                "or a unidirectional stack for decoding."
            )
        _check_step(where, self.num_layers, params, carry, x)
        if carry is None:
            carry = self.initial_carry(tuple(x.shape[:-1]))
        h, new_carry = x, []
        for lp, c in zip(params, carry, strict=True):
            c_f, h = self.cell(lp.forward, c.forward, h)  # (..., P)
            new_carry.append(LayerState(c_f))
        return tuple(new_carry), h

    def _run(self, params, xs, carry, lengths, reverse, key):
        mask = None
        if key is not None and self.recurrent_dropout > 0:
            fa = protocol.feature_axes(self.cell)
            step_batch = (
                xs.shape[1:-1] if self.time_major else xs.shape[: -(fa + 1)] + xs.shape[-fa:-1]
            )
            shape = tuple(step_batch) + (protocol.output_size(self.cell, xs.shape[-1]),)
            keep = 1.0 - self.recurrent_dropout
            mask = jax.random.bernoulli(key, keep, shape).astype(xs.dtype) / keep
        T = xs.shape[0] if self.time_major else xs.shape[-2]
        if (
            self.backward != "autodiff"
            and mask is None
            and isinstance(T, int)  # a symbolic length (jax.export) keeps the recurrence
            and parallel_pays(self.cell)
        ):
            return parallel_scan(
                self.cell, params, xs, carry, lengths=lengths, reverse=reverse,
                time_major=self.time_major,
            )  # fmt: skip
        fast = (
            self.backward != "autodiff"
            and fast_supported(self.cell, xs, carry)
            and rule_pays(self.cell)
        )
        return (fast_scan if fast else scan)(
            self.cell,
            params,
            xs,
            carry,
            lengths=lengths,
            reverse=reverse,
            time_major=self.time_major,
            unroll=self.unroll,
            recurrent_mask=mask,
        )

    def _batch_shape(self, xs) -> tuple[int, ...]:
        """One step's input shape without its last axis (the cells' ``initial_carry`` arg)."""
        fa = protocol.feature_axes(self.cell)
        if self.time_major:
            return tuple(xs.shape[1:-1])
        return tuple(xs.shape[: -(fa + 1)] + xs.shape[-fa:-1])

    def _layer_keys(self, key):
        if key is None:
            return [None] * self.num_layers
        return list(jax.random.split(key, self.num_layers))

    def _check(self, params, xs, carry, lengths) -> None:
        where = f"{type(self).__name__}.apply"
        p = Problems(where)
        if (
            not isinstance(params, tuple)
            or len(params) != self.num_layers
            or not all(isinstance(lp, LayerParams) for lp in params)
        ):
            p.type(
                f"`params` must be a tuple of {self.num_layers} LayerParams (from `init`); got "
                f"{_describe(params)}."
            )
        elif self.bidirectional != all(lp.backward is not None for lp in params):
            p.value(
                f"`params` must {'' if self.bidirectional else 'not '}hold backward cells "
                f"(bidirectional={self.bidirectional})."
            )
        if carry is not None and (
            not isinstance(carry, tuple)
            or len(carry) != self.num_layers
            or not all(isinstance(c, LayerState) for c in carry)
        ):
            p.type(
                f"`carry` must be a tuple of {self.num_layers} LayerState; got {_describe(carry)}."
            )
        p.raise_if_any()
        c0 = None if carry is None else carry[0].forward
        check_sequence(where, self.cell, params[0].forward, xs, c0, lengths, self.time_major)
        size = self.layer_output_size(xs.shape[-1])
        for layer in range(1, self.num_layers):  # deeper layers read `size` features
            why = f"layer {layer} of {protocol.describe(self.cell)}, reading {size} features"
            for direction in ("forward", "backward")[: 2 if self.bidirectional else 1]:
                got = getattr(params[layer], direction)
                want = protocol.param_shapes(self.cell, size)
                check_shapes(p, f"params[{layer}].{direction}", got, want, why)
        p.raise_if_any()


def _check_step(where, num_layers, params, carry, x) -> None:
    """The stack-level checks of ``step``; each cell checks its own params, carry and input."""
    p = Problems(where)
    n = num_layers
    if not _tuple_of(params, n, LayerParams):
        got = _describe(params)
        p.type(f"`params` must be a tuple of {n} LayerParams (from `init`); got {got}.")
    if carry is not None and not _tuple_of(carry, n, LayerState):
        p.type(f"`carry` must be a tuple of {n} LayerState; got {_describe(carry)}.")
    if not hasattr(x, "shape") or not hasattr(x, "dtype") or len(x.shape) < 1:
        p.type(f"`x` must be an array of shape (..., input_size); got {_describe(x)}.")
    p.raise_if_any()


def _tuple_of(x, n: int, kind: type) -> bool:
    return isinstance(x, tuple) and len(x) == n and all(isinstance(e, kind) for e in x)


def bidirectional_final(carry, merge: str = "concat") -> tuple[LayerState, ...]:
    """Each layer's final ``[forward, backward]`` state, merged: a decoder's initial carry.

    Args:
      carry: the carry a (bidirectional) :class:`StackedRNN` returns, one
        :class:`LayerState` per layer.
      merge: ``"concat"`` joins the two directions on the last axis, ``[forward, backward]``
        (the order of the layer's outputs), so a layer of hidden size ``H`` gives states of
        size ``2H``; ``"sum"`` and ``"mean"`` keep size ``H``. Every leaf of the cell's carry
        (``h`` and ``c`` for an LSTM) is merged the same way.

    Returns:
      One ``LayerState(merged, None)`` per layer: the carry of a unidirectional stack of the
      same depth and cell kind (hidden size ``2H`` for ``"concat"``), ready for its
      ``apply(params, xs, carry)`` or ``step``. Layers without a backward state pass through.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import lstm_jax as lj
      >>> encoder, decoder = lj.LSTM(8, bidirectional=True), lj.LSTM(16)
      >>> carry, _ = encoder.apply(encoder.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))
      >>> start = lj.bidirectional_final(carry)
      >>> start[0].forward.h.shape, start[0].forward.c.shape
      ((2, 16), (2, 16))
      >>> _, ys = decoder.apply(decoder.init(jax.random.key(1), 4), jnp.ones((2, 7, 4)), start)
    """
    merges = {
        "concat": lambda f, b: jnp.concatenate([f, b], axis=-1),
        "sum": lambda f, b: f + b,
        "mean": lambda f, b: (f + b) / 2,
    }
    if merge not in merges:
        raise ValueError(
            f"`bidirectional_final`: `merge` must be one of {sorted(merges)}; got {merge!r}."
        )
    if not isinstance(carry, tuple) or not all(isinstance(c, LayerState) for c in carry):
        raise TypeError(
            "`bidirectional_final`: `carry` must be the tuple of LayerState that "
            f"`StackedRNN.apply` returns; got {_describe(carry)}."
        )
    out = []
    for s in carry:
        merged = s.forward
        if s.backward is not None:
            merged = jax.tree.map(merges[merge], s.forward, s.backward)
        out.append(LayerState(merged))
    return tuple(out)


def _describe(x) -> str:
    if isinstance(x, tuple):
        kinds = ", ".join(type(e).__name__ for e in x[:3]) + (", ..." if len(x) > 3 else "")
        return f"{type(x).__name__} of {len(x)} ({kinds})"
    return type(x).__name__


def LSTM(
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    proj_size: int | None = None,
    *,
    recurrent_dropout: float = 0.0,
    time_major: bool = False,
    unroll: int | bool | None = None,
    backward: str = "fast",
    **cell_options,
) -> StackedRNN:
    """A stacked (optionally bidirectional) LSTM: ``StackedRNN(LSTMCell(hidden_size, ...))``.

    ``cell_options`` go to :class:`LSTMCell` (``forget_bias``, ``peephole``, ``layer_norm``,
    ``dtype``, ...). The article's Keras ``LSTM(50, input_shape=(100, 1))`` is ``LSTM(50)`` with
    ``init(key, input_size=1)``. ``backward`` picks how derivatives are computed (see
    :class:`StackedRNN`; the hand-derived rule by default).
    """
    cell = LSTMCell(hidden_size, proj_size=proj_size, **cell_options)
    return StackedRNN(
        cell, num_layers, bidirectional, dropout, recurrent_dropout, time_major, unroll, backward
    )


def GRU(
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    *,
    recurrent_dropout: float = 0.0,
    time_major: bool = False,
    unroll: int | bool | None = None,
    backward: str = "fast",
    **cell_options,
) -> StackedRNN:
    """A stacked (optionally bidirectional) GRU: ``StackedRNN(GRUCell(hidden_size, ...))``."""
    cell = GRUCell(hidden_size, **cell_options)
    return StackedRNN(
        cell, num_layers, bidirectional, dropout, recurrent_dropout, time_major, unroll, backward
    )


def SimpleRNN(
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    *,
    recurrent_dropout: float = 0.0,
    time_major: bool = False,
    unroll: int | bool | None = None,
    backward: str = "fast",
    **cell_options,
) -> StackedRNN:
    """A stacked (optionally bidirectional) tanh RNN: ``StackedRNN(SimpleRNNCell(...))``."""
    cell = SimpleRNNCell(hidden_size, **cell_options)
    return StackedRNN(
        cell, num_layers, bidirectional, dropout, recurrent_dropout, time_major, unroll, backward
    )
