"""NNX ``LSTMCell`` and ``OptimizedLSTMCell``: Flax's modules and params, the core's LSTM step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx
from flax.nnx import rnglib
from flax.nnx.nn import dtypes
from flax.nnx.nn.recurrent import modified_orthogonal

from lstm_jax.cells.lstm import LSTMCell as CoreLSTM
from lstm_jax.cells.lstm import LSTMParams, LSTMState
from lstm_jax.nnx.base import NO_METADATA, CellBase, linear

_lecun = nnx.initializers.lecun_normal()
_zeros = nnx.initializers.zeros_init()
_orth = nnx.initializers.orthogonal()


class _LSTMBase(CellBase):
    n_carry = 2

    def _init(self, gate_fn, activation_fn, dtype, param_dtype, promote_dtype, keep_rngs, rngs,
              in_features, hidden_features):  # fmt: skip
        self._setup(in_features, hidden_features, dtype, param_dtype, promote_dtype, keep_rngs,
                    rngs)  # fmt: skip
        self.gate_fn = gate_fn
        self.activation_fn = activation_fn

    def _core(self, compute, out) -> CoreLSTM:
        return CoreLSTM(
            self.hidden_features,
            forget_bias=0.0,
            gate_activation=self.gate_fn,
            activation=self.activation_fn,
            dtype=compute,
            param_dtype=out,
        )

    def _out_dtype(self, dz, carry):
        return jnp.result_type(dz, carry[0])  # Flax: f * c + i * g

    def to_core_carry(self, carry):
        c, h = carry
        return LSTMState(h=h, c=c)

    def from_core_carry(self, carry):
        return (carry.c, carry.h)

    def _hidden(self, carry):
        return carry[1]

    def _output(self, carry):
        return carry[1]

    def _core_params(self, w_x, w_h, b) -> LSTMParams:
        return LSTMParams(w_x=w_x, w_h=w_h, b=b)


class LSTMCell(_LSTMBase):
    r"""Drop-in for ``flax.nnx.LSTMCell``: eight ``nnx.Linear`` modules, carry ``(c, h)``.

    ``ii, if_, ig, io`` map ``x`` (kernel ``(in_features, hidden_features)``, no bias);
    ``hi, hf, hg, ho`` map ``h`` (kernel ``(hidden_features, hidden_features)`` and bias). The
    step is :class:`lstm_jax.LSTMCell`'s with ``w_x``, ``w_h`` and ``b`` the concatenations
    i, f, g, o of those kernels and biases::

        i = gate_fn(x W_ii + h W_hi + b_hi)      f = gate_fn(x W_if + h W_hf + b_hf)
        g = activation_fn(x W_ig + h W_hg + b_hg) o = gate_fn(x W_io + h W_ho + b_ho)
        c' = f * c + i * g                       h' = o * activation_fn(c')

    Args:
      in_features, hidden_features: sizes (positive ints).
      gate_fn, activation_fn: the gate and the cell activations.
      kernel_init, recurrent_kernel_init, bias_init: initialisers, drawn from ``rngs.params``
        in Flax's order (``ii, if_, ig, io``, then each of ``hi, hf, hg, ho`` kernel and bias).
      dtype: dtype of the products (None: promoted from the inputs and params).
      param_dtype: dtype of the params and of ``initialize_carry``'s arrays.
      carry_init: default carry initialiser (Flax warns about it here, and so does this).
      promote_dtype: ``promote_dtype((array, kernel, bias), dtype=dtype)``, applied to each
        side of the step as Flax's ``Linear`` applies it.
      keep_rngs: keep ``rngs.carry`` for ``initialize_carry`` (deprecated in Flax; warns).
      rngs: an ``nnx.Rngs``.
      kernel_metadata, recurrent_kernel_metadata, bias_metadata: ``nnx.Param`` metadata.

    Raises:
      TypeError / ValueError: ``in_features`` or ``hidden_features`` is not an int >= 1.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from lstm_jax import nnx as ljnnx
      >>> cell = ljnnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
      >>> (c, h), y = cell(cell.initialize_carry((2, 3), nnx.Rngs(0)), jnp.ones((2, 3)))
      >>> y.shape, type(cell.if_).__name__, cell.hi.use_bias
      ((2, 4), 'Linear', True)
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = nnx.sigmoid,
        activation_fn: Callable[..., Any] = nnx.tanh,
        kernel_init: Any = _lecun,
        recurrent_kernel_init: Any = modified_orthogonal,
        bias_init: Any = _zeros,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        promote_dtype: Any = dtypes.promote_dtype,
        keep_rngs: bool = False,
        rngs: rnglib.Rngs,
        kernel_metadata: Mapping[str, Any] = NO_METADATA,
        recurrent_kernel_metadata: Mapping[str, Any] = NO_METADATA,
        bias_metadata: Mapping[str, Any] = NO_METADATA,
    ):
        self._init(gate_fn, activation_fn, dtype, param_dtype, promote_dtype, keep_rngs, rngs,
                   in_features, hidden_features)  # fmt: skip
        I, H = self.in_features, self.hidden_features
        k_meta, r_meta = kernel_metadata, recurrent_kernel_metadata

        def dense_i():
            return linear(I, H, False, kernel_init, None, self, rngs, k_meta, None)

        def dense_h():
            return linear(H, H, True, recurrent_kernel_init, bias_init, self, rngs, r_meta,
                          bias_metadata)  # fmt: skip

        self.ii, self.if_, self.ig, self.io = dense_i(), dense_i(), dense_i(), dense_i()
        self.hi, self.hf, self.hg, self.ho = dense_h(), dense_h(), dense_h(), dense_h()
        self._set_carry_init(carry_init)

    def _sides(self):
        cat = lambda parts: jnp.concatenate(parts, axis=-1)  # noqa: E731
        w_x = cat([d.kernel[...] for d in (self.ii, self.if_, self.ig, self.io)])  # (I, 4H)
        hs = (self.hi, self.hf, self.hg, self.ho)
        w_h = cat([d.kernel[...] for d in hs])  # (H, 4H)
        return (w_x, None), (w_h, cat([d.bias[...] for d in hs]))  # b: (4H,)


class OptimizedLSTMCell(_LSTMBase):
    """Drop-in for ``flax.nnx.OptimizedLSTMCell``: ``dense_i`` (kernel ``(I, 4H)``, no bias) and
    ``dense_h`` (kernel ``(H, 4H)``, bias ``(4H,)``), gate blocks i, f, g, o, which is exactly
    :class:`lstm_jax.LSTMParams`' layout. Same arguments and step as :class:`LSTMCell`, with
    ``recurrent_kernel_init`` defaulting to ``nnx.initializers.orthogonal()`` as in Flax.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from lstm_jax import nnx as ljnnx
      >>> cell = ljnnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0))
      >>> cell.dense_i.kernel.shape, cell.dense_h.bias.shape
      ((3, 16), (16,))
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = nnx.sigmoid,
        activation_fn: Callable[..., Any] = nnx.tanh,
        kernel_init: Any = _lecun,
        recurrent_kernel_init: Any = _orth,
        bias_init: Any = _zeros,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        promote_dtype: Any = dtypes.promote_dtype,
        keep_rngs: bool = False,
        rngs: rnglib.Rngs,
        kernel_metadata: Mapping[str, Any] = NO_METADATA,
        recurrent_kernel_metadata: Mapping[str, Any] = NO_METADATA,
        bias_metadata: Mapping[str, Any] = NO_METADATA,
    ):
        self._init(gate_fn, activation_fn, dtype, param_dtype, promote_dtype, keep_rngs, rngs,
                   in_features, hidden_features)  # fmt: skip
        I, H = self.in_features, self.hidden_features
        self.dense_i = linear(I, 4 * H, False, kernel_init, None, self, rngs, kernel_metadata,
                              None)  # fmt: skip
        self.dense_h = linear(H, 4 * H, True, recurrent_kernel_init, bias_init, self, rngs,
                              recurrent_kernel_metadata, bias_metadata)  # fmt: skip
        self._set_carry_init(carry_init)

    def _sides(self):
        return (self.dense_i.kernel[...], None), (self.dense_h.kernel[...], self.dense_h.bias[...])
