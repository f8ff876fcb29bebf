"""A dense (fully connected) layer, the head that maps recurrent features to predictions."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.core.checks import Problems, check_float_array, check_shapes
from lstm_jax.core.dtypes import compute_dtypes
from lstm_jax.core.initializers import Initializer, resolve_initializer
from lstm_jax.core.ops import lead, matmul
from lstm_jax.core.validate import check_bool, check_dtype, check_int, check_key


class DenseParams(NamedTuple):
    w: jax.Array  # (F, O)
    b: jax.Array | None = None  # (O,)


@dataclasses.dataclass(frozen=True)
class Dense:
    """``y = x @ w + b``, for ``x: (..., F)`` and ``y: (..., O)``; Keras' ``Dense(O)``.

    ``y`` is in the promoted dtype of ``params`` and ``x``; ``dtype``, when set, is the dtype
    of the product's operands (the rule of every cell, :mod:`lstm_jax.core.dtypes`).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import Dense
      >>> head = Dense(1)
      >>> params = head.init(jax.random.key(0), 50)
      >>> head.apply(params, jnp.ones((32, 50))).shape
      (32, 1)
    """

    features: int
    use_bias: bool = True
    kernel_init: str | Initializer = "glorot_uniform"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        object.__setattr__(self, "features", check_int("Dense", "features", self.features))
        object.__setattr__(self, "use_bias", check_bool("Dense", "use_bias", self.use_bias))
        object.__setattr__(self, "dtype", check_dtype("Dense", "dtype", self.dtype))
        pdt = check_dtype("Dense", "param_dtype", self.param_dtype, allow_none=False)
        object.__setattr__(self, "param_dtype", pdt)
        resolve_initializer(self.kernel_init, self.features, "Dense", "kernel_init")

    def init(self, key: jax.Array, input_size: int) -> DenseParams:
        key = check_key("Dense.init", "key", key)
        input_size = check_int("Dense.init", "input_size", input_size)
        init = resolve_initializer(self.kernel_init, self.features, "Dense", "kernel_init")
        w = init(key, (input_size, self.features), self.param_dtype)
        b = jnp.zeros((self.features,), self.param_dtype) if self.use_bias else None
        return DenseParams(w, b)

    def apply(self, params: DenseParams, x: jax.Array) -> jax.Array:
        p = Problems("Dense.apply")
        if not isinstance(params, DenseParams):
            p.type(
                f"`params` must be a DenseParams (from `Dense.init`); got {type(params).__name__}."
            )
        elif check_float_array(p, "x", x, 1, "(..., features_in)"):
            F = x.shape[-1]
            exp = DenseParams((F, self.features), (self.features,) if self.use_bias else None)
            check_shapes(p, "params", params, exp, f"Dense({self.features}) on {F} input features")
        p.raise_if_any()
        cdt, odt = compute_dtypes(self.dtype, params.w, x)  # rule: lstm_jax.core.dtypes
        y = matmul(x, params.w, cdt, odt)
        return y if params.b is None else y + lead(params.b.astype(odt), y.ndim)
