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
    """Normalises the last axis of ``v`` to zero mean, unit variance; then scales (Ba 2016).

    ``(v - mean) / sqrt(var + eps)`` is computed as ``u / sqrt(mean(u**2) + eps / s**2)`` with
    ``u = (v - mean) / s`` and ``s = max(1, max|v - mean|)``: the same number, but the variance
    of a row of scale 1e20 no longer overflows float32 (which made the output exactly 0).
    """
    mean = jnp.mean(v, axis=-1, keepdims=True)
    d = v - mean
    s = jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(d), axis=-1, keepdims=True), 1.0))
    u = d / s
    var_u = jnp.mean(jnp.square(u), axis=-1, keepdims=True)
    out = u * jax.lax.rsqrt(var_u + eps / jnp.square(s)) * lead(scale, v.ndim)
    return out if bias is None else out + lead(bias, v.ndim)
