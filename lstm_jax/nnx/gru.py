"""NNX ``GRUCell`` and ``SimpleCell``: Flax's param trees, the core's GRU and Elman steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax.nnx import rnglib

from lstm_jax.cells.gru import GRUCell as CoreGRU
from lstm_jax.cells.gru import GRUParams
from lstm_jax.cells.simple_rnn import SimpleRNNCell as CoreSimple
from lstm_jax.cells.simple_rnn import SimpleRNNParams
from lstm_jax.nnx.base import _NO_META, _CellBase, _lecun, _Linear, _orth, _zeros


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
