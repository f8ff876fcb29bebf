"""NNX cells with Flax's constructor, call convention and parameter tree, computed by the core.

Each class mirrors its ``flax.nnx`` namesake: the same constructor arguments, the same
``nnx.Param`` names and shapes (so ``nnx.update(ours, nnx.state(theirs))`` works both ways, and
the same ``rngs`` seed draws the same initial weights), ``__call__(carry, inputs) ->
(new_carry, output)`` with Flax's ``(c, h)`` LSTM carry, and ``initialize_carry``. The step itself
is the functional core's: each cell assembles its params into the core's NamedTuple and calls
:class:`lstm_jax.LSTMCell` (or ``GRUCell``, ``SimpleRNNCell``). :class:`lstm_jax.nnx.RNN` uses the
same pair to run :func:`lstm_jax.scan` over a whole sequence.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import rnglib
from flax.nnx.nn import initializers
from flax.nnx.nn.recurrent import RNNCellBase

from lstm_jax.cells.lstm import LSTMCell as CoreLSTM
from lstm_jax.cells.lstm import LSTMState

Array = jax.Array
_NO_META: Mapping[str, Any] = MappingProxyType({})
_lecun = initializers.lecun_normal()
_zeros = initializers.zeros_init()
_orth = initializers.orthogonal()


class _Linear(nnx.Module):
    """Holds ``kernel (in, out)`` and optionally ``bias (out,)`` as ``nnx.Linear`` does, drawn
    in the same order from ``rngs.params``. It is never called: the core does the maths."""

    def __init__(self, n_in, n_out, use_bias, kernel_init, bias_init, dtype, rngs, k_meta, b_meta):
        self.kernel = nnx.Param(kernel_init(rngs.params(), (n_in, n_out), dtype), **k_meta)
        if use_bias:
            self.bias = nnx.Param(bias_init(rngs.params(), (n_out,), dtype), **b_meta)
        else:
            self.bias = nnx.data(None)


class _CellBase(RNNCellBase):
    """Shared plumbing: rngs handling, carry initialisation, the core cell and its params."""

    def _setup(self, in_features, hidden_features, dtype, param_dtype, carry_init, keep_rngs, rngs):
        self.in_features = in_features
        self.hidden_features = hidden_features
        self.dtype = dtype
        self.param_dtype = param_dtype
        if keep_rngs:
            warnings.warn(
                "keep_rngs is deprecated; pass rngs to initialize_carry instead.", stacklevel=3
            )
            self.rngs = rngs.carry.fork()
        else:
            self.rngs = nnx.data(None)
        self.carry_init = carry_init

    def _carry_part(self, input_shape, rngs, carry_init, n):
        init = carry_init if carry_init is not None else self.carry_init
        shape = tuple(input_shape[:-1]) + (self.hidden_features,)
        if init is None:  # zeros need no random numbers
            return [jnp.zeros(shape, self.param_dtype) for _ in range(n)]
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, rnglib.Rngs):
            rngs = rngs.carry
        if rngs is None:
            raise ValueError(
                f"`{type(self).__name__}.initialize_carry`: `rngs` must be given when a "
                "`carry_init` is used."
            )
        return [init(rngs(), shape, self.param_dtype) for _ in range(n)]

    @property
    def num_feature_axes(self) -> int:
        return 1

    def __call__(self, carry, inputs):
        core = self.core_cell()
        new, y = core(self.core_params(), self.to_core_carry(carry), inputs)
        return self.from_core_carry(new), y

    # The LSTM carry is (c, h) in Flax and LSTMState(h, c) in the core; others are plain h.
    def to_core_carry(self, carry):
        return carry

    def from_core_carry(self, carry):
        return carry


class _LSTMBase(_CellBase):
    def core_cell(self) -> CoreLSTM:
        return CoreLSTM(
            self.hidden_features,
            forget_bias=0.0,
            gate_activation=self.gate_fn,
            activation=self.activation_fn,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def to_core_carry(self, carry):
        c, h = carry
        return LSTMState(h=h, c=c)

    def from_core_carry(self, carry):
        return (carry.c, carry.h)

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
        """``(c, h)``, each ``(*input_shape[:-1], hidden_features)``; zeros by default."""
        c, h = self._carry_part(input_shape, rngs, carry_init, 2)
        return (c, h)
