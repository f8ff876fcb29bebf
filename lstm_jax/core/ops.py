"""Small array helpers that keep rank and dtype explicit (the tests run with
``jax_numpy_rank_promotion="raise"`` and strict dtype promotion)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def lead(v: jax.Array, ndim: int) -> jax.Array:
    """Prepends singleton axes so ``v`` has rank ``ndim``: ``(n,) -> (1, ..., 1, n)``."""
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def matmul(a: jax.Array, w: jax.Array, compute_dtype, out_dtype) -> jax.Array:
    """``a @ w`` with both operands in ``compute_dtype`` and the result in ``out_dtype``.

    With ``compute_dtype=bfloat16`` and ``out_dtype=float32`` the product runs in bf16 and
    accumulates in f32, the usual mixed-precision recipe.
    """
    return jnp.matmul(
        a.astype(compute_dtype), w.astype(compute_dtype), preferred_element_type=out_dtype
    )


def layer_norm(v: jax.Array, scale: jax.Array, bias: jax.Array | None, eps: float = 1e-5):
    """Normalises the last axis of ``v`` to zero mean, unit variance; then scales (Ba 2016)."""
    mean = jnp.mean(v, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(v - mean), axis=-1, keepdims=True)
    out = (v - mean) * jax.lax.rsqrt(var + eps) * lead(scale, v.ndim)
    return out if bias is None else out + lead(bias, v.ndim)
