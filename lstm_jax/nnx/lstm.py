"""NNX ``LSTMCell`` and ``OptimizedLSTMCell``: Flax's param trees, the core's LSTM step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax.nnx import rnglib
from flax.nnx.nn.recurrent import modified_orthogonal

from lstm_jax.cells.lstm import LSTMParams
from lstm_jax.nnx.base import (
    _NO_META,
    _lecun,
    _Linear,
    _LSTMBase,
    _orth,
    _zeros,
)


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
