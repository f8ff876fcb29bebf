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
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import rnglib
from flax.nnx.nn import initializers
from flax.nnx.nn.recurrent import RNNCellBase, modified_orthogonal

from lstm_jax._gru import GRUCell as CoreGRU
from lstm_jax._gru import GRUParams
from lstm_jax._lstm import LSTMCell as CoreLSTM
from lstm_jax._lstm import LSTMParams, LSTMState
from lstm_jax._simple_rnn import SimpleRNNCell as CoreSimple
from lstm_jax._simple_rnn import SimpleRNNParams

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


class LSTMCell(_LSTMBase):
    """Drop-in for ``flax.nnx.LSTMCell``: eight ``Linear``-shaped param holders (``ii, if_,
    ig, io`` without bias, ``hi, hf, hg, ho`` with bias), carry ``(c, h)``.

    Computes the textbook LSTM step of :class:`lstm_jax.LSTMCell` with ``w_x`` the
    concatenation of the ``i*`` kernels and ``b`` that of the ``h*`` biases. ``promote_dtype``
    is accepted for compatibility and unused: the core computes in ``dtype`` (or
    ``param_dtype``).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from lstm_jax import nnx as ljnnx
      >>> cell = ljnnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
      >>> carry = cell.initialize_carry((2, 3))
      >>> (c, h), y = cell(carry, jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = jax.nn.sigmoid,
        activation_fn: Callable[..., Any] = jnp.tanh,
        kernel_init: Any = _lecun,
        recurrent_kernel_init: Any = modified_orthogonal,
        bias_init: Any = _zeros,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        promote_dtype: Any = None,
        keep_rngs: bool = False,
        rngs: rnglib.Rngs,
        kernel_metadata: Mapping[str, Any] = _NO_META,
        recurrent_kernel_metadata: Mapping[str, Any] = _NO_META,
        bias_metadata: Mapping[str, Any] = _NO_META,
    ):
        self._setup(in_features, hidden_features, dtype, param_dtype, carry_init, keep_rngs, rngs)
        self.gate_fn, self.activation_fn, self.promote_dtype = gate_fn, activation_fn, promote_dtype
        H, I, pd = hidden_features, in_features, param_dtype
        k_meta, r_meta = kernel_metadata, recurrent_kernel_metadata
        self.ii, self.if_, self.ig, self.io = (
            _Linear(I, H, False, kernel_init, None, pd, rngs, k_meta, None) for _ in range(4)
        )
        self.hi, self.hf, self.hg, self.ho = (
            _Linear(H, H, True, recurrent_kernel_init, bias_init, pd, rngs, r_meta, bias_metadata)
            for _ in range(4)
        )

    def core_params(self) -> LSTMParams:
        i_parts, h_parts = (
            (self.ii, self.if_, self.ig, self.io),
            (self.hi, self.hf, self.hg, self.ho),
        )
        return LSTMParams(
            w_x=jnp.concatenate([d.kernel[...] for d in i_parts], axis=-1),  # (I, 4H) i, f, g, o
            w_h=jnp.concatenate([d.kernel[...] for d in h_parts], axis=-1),  # (H, 4H)
            b=jnp.concatenate([d.bias[...] for d in h_parts], axis=-1),  # (4H,)
        )


class OptimizedLSTMCell(_LSTMBase):
    """Drop-in for ``flax.nnx.OptimizedLSTMCell``: ``dense_i.kernel (I, 4H)``,
    ``dense_h.kernel (H, 4H)`` and ``dense_h.bias (4H,)``, gate blocks i, f, g, o, which is
    exactly :class:`lstm_jax.LSTMParams`' layout. Same arguments as :class:`LSTMCell`."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = jax.nn.sigmoid,
        activation_fn: Callable[..., Any] = jnp.tanh,
        kernel_init: Any = _lecun,
        recurrent_kernel_init: Any = _orth,
        bias_init: Any = _zeros,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        promote_dtype: Any = None,
        keep_rngs: bool = False,
        rngs: rnglib.Rngs,
        kernel_metadata: Mapping[str, Any] = _NO_META,
        recurrent_kernel_metadata: Mapping[str, Any] = _NO_META,
        bias_metadata: Mapping[str, Any] = _NO_META,
    ):
        self._setup(in_features, hidden_features, dtype, param_dtype, carry_init, keep_rngs, rngs)
        self.gate_fn, self.activation_fn, self.promote_dtype = gate_fn, activation_fn, promote_dtype
        H, pd = hidden_features, param_dtype
        self.dense_i = _Linear(in_features, 4 * H, False, kernel_init, None, pd, rngs,
                               kernel_metadata, None)  # fmt: skip
        self.dense_h = _Linear(H, 4 * H, True, recurrent_kernel_init, bias_init, pd, rngs,
                               recurrent_kernel_metadata, bias_metadata)  # fmt: skip

    def core_params(self) -> LSTMParams:
        return LSTMParams(
            self.dense_i.kernel[...], self.dense_h.kernel[...], self.dense_h.bias[...]
        )


class GRUCell(_CellBase):
    """Drop-in for ``flax.nnx.GRUCell``: ``dense_i`` (kernel ``(I, 3H)``, bias) and ``dense_h``
    (kernel ``(H, 3H)``, no bias), gate blocks r, z, n; the core's ``GRUCell`` with
    ``reset_after=True`` and ``b_hn = 0`` (Flax's NNX GRU has no recurrent candidate bias)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = jax.nn.sigmoid,
        activation_fn: Callable[..., Any] = jnp.tanh,
        kernel_init: Any = _lecun,
        recurrent_kernel_init: Any = _orth,
        bias_init: Any = _zeros,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        promote_dtype: Any = None,
        keep_rngs: bool = False,
        rngs: rnglib.Rngs,
        kernel_metadata: Mapping[str, Any] = _NO_META,
        recurrent_kernel_metadata: Mapping[str, Any] = _NO_META,
        bias_metadata: Mapping[str, Any] = _NO_META,
    ):
        self._setup(in_features, hidden_features, dtype, param_dtype, carry_init, keep_rngs, rngs)
        self.gate_fn, self.activation_fn, self.promote_dtype = gate_fn, activation_fn, promote_dtype
        H, pd = hidden_features, param_dtype
        self.dense_i = _Linear(in_features, 3 * H, True, kernel_init, bias_init, pd, rngs,
                               kernel_metadata, bias_metadata)  # fmt: skip
        self.dense_h = _Linear(H, 3 * H, False, recurrent_kernel_init, None, pd, rngs,
                               recurrent_kernel_metadata, None)  # fmt: skip

    def core_cell(self) -> CoreGRU:
        return CoreGRU(
            self.hidden_features,
            reset_after=True,
            gate_activation=self.gate_fn,
            activation=self.activation_fn,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def core_params(self) -> GRUParams:
        b = self.dense_i.bias[...]
        b_hn = jnp.zeros((self.hidden_features,), b.dtype)
        return GRUParams(self.dense_i.kernel[...], self.dense_h.kernel[...], b, b_hn)

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
        """``h``: ``(*input_shape[:-1], hidden_features)``; zeros by default."""
        return self._carry_part(input_shape, rngs, carry_init, 1)[0]


class SimpleCell(_CellBase):
    """Drop-in for ``flax.nnx.SimpleCell``: ``h' = activation_fn(x W_i + b_i + h W_h)``, plus
    ``h`` inside the activation when ``residual=True`` (computed as ``h (W_h + I)``)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        residual: bool = False,
        activation_fn: Callable[..., Any] = jnp.tanh,
        kernel_init: Any = _lecun,
        recurrent_kernel_init: Any = _orth,
        bias_init: Any = _zeros,
        promote_dtype: Any = None,
        keep_rngs: bool = False,
        rngs: rnglib.Rngs,
        kernel_metadata: Mapping[str, Any] = _NO_META,
        recurrent_kernel_metadata: Mapping[str, Any] = _NO_META,
        bias_metadata: Mapping[str, Any] = _NO_META,
    ):
        self._setup(in_features, hidden_features, dtype, param_dtype, carry_init, keep_rngs, rngs)
        self.residual, self.activation_fn, self.promote_dtype = (
            residual,
            activation_fn,
            promote_dtype,
        )
        H, pd = hidden_features, param_dtype
        # Flax draws the recurrent kernel first; so do we, so one seed gives the same weights.
        self.dense_h = _Linear(H, H, False, recurrent_kernel_init, None, pd, rngs,
                               recurrent_kernel_metadata, None)  # fmt: skip
        self.dense_i = _Linear(in_features, H, True, kernel_init, bias_init, pd, rngs,
                               kernel_metadata, bias_metadata)  # fmt: skip

    def core_cell(self) -> CoreSimple:
        return CoreSimple(
            self.hidden_features, self.activation_fn, dtype=self.dtype, param_dtype=self.param_dtype
        )

    def core_params(self) -> SimpleRNNParams:
        w_h = self.dense_h.kernel[...]
        if self.residual:  # act(x W_i + b + h W_h + h) == act(x W_i + b + h (W_h + I))
            w_h = w_h + jnp.eye(w_h.shape[0], dtype=w_h.dtype)
        return SimpleRNNParams(self.dense_i.kernel[...], w_h, self.dense_i.bias[...])

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
        """``h``: ``(*input_shape[:-1], hidden_features)``; zeros by default."""
        return self._carry_part(input_shape, rngs, carry_init, 1)[0]
