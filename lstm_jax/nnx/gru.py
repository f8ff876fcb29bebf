"""NNX ``GRUCell`` and ``SimpleCell``: Flax's modules and params, the core's GRU and Elman steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx
from flax.nnx import rnglib
from flax.nnx.nn import dtypes

from lstm_jax.cells.gru import GRUCell as CoreGRU
from lstm_jax.cells.gru import GRUParams
from lstm_jax.cells.simple_rnn import SimpleRNNCell as CoreSimple
from lstm_jax.cells.simple_rnn import SimpleRNNParams
from lstm_jax.nnx.base import NO_METADATA, CellBase, linear

_lecun = nnx.initializers.lecun_normal()
_zeros = nnx.initializers.zeros_init()
_orth = nnx.initializers.orthogonal()


class GRUCell(CellBase):
    r"""Drop-in for ``flax.nnx.GRUCell``: ``dense_i`` (kernel ``(I, 3H)``, bias ``(3H,)``) and
    ``dense_h`` (kernel ``(H, 3H)``, no bias), gate blocks r, z, n; carry ``h``::

        r = gate_fn(x W_ir + b_ir + h W_hr)      z = gate_fn(x W_iz + b_iz + h W_hz)
        n = activation_fn(x W_in + b_in + r * (h W_hn))
        h' = (1 - z) * n + z * h

    computed by :class:`lstm_jax.GRUCell` with ``reset_after=True`` and ``b_hn = 0`` (Flax's
    NNX GRU has no recurrent candidate bias). Arguments as :class:`lstm_jax.nnx.LSTMCell`'s.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from lstm_jax import nnx as ljnnx
      >>> cell = ljnnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
      >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.arange(6).reshape(2, 3))  # ints promote
      >>> y.shape, y.dtype, cell.dense_h.use_bias
      ((2, 4), dtype('float32'), False)
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
        self._setup(in_features, hidden_features, dtype, param_dtype, promote_dtype, keep_rngs,
                    rngs)  # fmt: skip
        self.gate_fn = gate_fn
        self.activation_fn = activation_fn
        I, H = self.in_features, self.hidden_features
        self.dense_i = linear(I, 3 * H, True, kernel_init, bias_init, self, rngs, kernel_metadata,
                              bias_metadata)  # fmt: skip
        self.dense_h = linear(H, 3 * H, False, recurrent_kernel_init, None, self, rngs,
                              recurrent_kernel_metadata, None)  # fmt: skip
        self._set_carry_init(carry_init)

    def _sides(self):
        return (self.dense_i.kernel[...], self.dense_i.bias[...]), (self.dense_h.kernel[...], None)

    def _out_dtype(self, dz, carry):
        return jnp.result_type(dz, carry)  # Flax: (1 - z) * n + z * h

    def _core(self, compute, out) -> CoreGRU:
        return CoreGRU(
            self.hidden_features,
            reset_after=True,
            gate_activation=self.gate_fn,
            activation=self.activation_fn,
            dtype=compute,
            param_dtype=out,
        )

    def _core_params(self, w_x, w_h, b) -> GRUParams:
        return GRUParams(w_x, w_h, b, jnp.zeros((self.hidden_features,), b.dtype))


class SimpleCell(CellBase):
    """Drop-in for ``flax.nnx.SimpleCell``: ``h' = activation_fn(x W_i + b_i + h W_h)``, plus
    ``h`` inside the activation when ``residual=True`` (computed as ``h (W_h + I)``).

    ``dense_h`` (kernel ``(H, H)``, no bias) is drawn before ``dense_i`` (kernel ``(I, H)``,
    bias), as in Flax, so one seed gives the same weights. As in Flax, ``dtype`` defaults to
    float32 here (not None). The step is :class:`lstm_jax.SimpleRNNCell`'s.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from lstm_jax import nnx as ljnnx
      >>> cell = ljnnx.SimpleCell(3, 4, residual=True, rngs=nnx.Rngs(0))
      >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        residual: bool = False,
        activation_fn: Callable[..., Any] = nnx.tanh,
        kernel_init: Any = _lecun,
        recurrent_kernel_init: Any = _orth,
        bias_init: Any = _zeros,
        promote_dtype: Any = dtypes.promote_dtype,
        keep_rngs: bool = False,
        rngs: rnglib.Rngs,
        kernel_metadata: Mapping[str, Any] = NO_METADATA,
        recurrent_kernel_metadata: Mapping[str, Any] = NO_METADATA,
        bias_metadata: Mapping[str, Any] = NO_METADATA,
    ):
        self._setup(in_features, hidden_features, dtype, param_dtype, promote_dtype, keep_rngs,
                    rngs)  # fmt: skip
        self.residual = residual
        self.activation_fn = activation_fn
        I, H = self.in_features, self.hidden_features
        self.dense_h = linear(H, H, False, recurrent_kernel_init, None, self, rngs,
                              recurrent_kernel_metadata, None)  # fmt: skip
        self.dense_i = linear(I, H, True, kernel_init, bias_init, self, rngs, kernel_metadata,
                              bias_metadata)  # fmt: skip
        self._set_carry_init(carry_init)

    def _sides(self):
        return (self.dense_i.kernel[...], self.dense_i.bias[...]), (self.dense_h.kernel[...], None)

    def _out_dtype(self, dz, carry):
        return jnp.result_type(dz, carry) if self.residual else dz  # Flax: ... + h when residual

    def _core(self, compute, out) -> CoreSimple:
        return CoreSimple(self.hidden_features, self.activation_fn, dtype=compute, param_dtype=out)

    def _core_params(self, w_x, w_h, b) -> SimpleRNNParams:
        if self.residual:  # act(x W_i + b + h W_h + h) == act(x W_i + b + h (W_h + I))
            w_h = w_h + jnp.eye(w_h.shape[0], dtype=w_h.dtype)
        return SimpleRNNParams(w_x, w_h, b)
