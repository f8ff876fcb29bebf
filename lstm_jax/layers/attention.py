"""Additive attention pooling over a sequence of recurrent outputs (Bahdanau et al. 2015).

For outputs ``h_t`` of shape ``(..., T, D)``::

    e_t     = v . tanh(h_t @ w + b)          score of step t        (..., T)
    alpha_t = softmax_t(e_t) over valid t    attention weights      (..., T)
    context = sum_t alpha_t h_t              pooled summary         (..., D)

Padded steps (``t >= lengths``) get zero weight.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.core.checks import Problems, check_float_array, check_shapes, check_size
from lstm_jax.core.initializers import Initializer, resolve_initializer
from lstm_jax.core.ops import lead, matmul
from lstm_jax.sequence.masks import sequence_mask
from lstm_jax.sequence.scan import check_lengths


class AttentionParams(NamedTuple):
    w: jax.Array  # (D, A)
    b: jax.Array  # (A,)
    v: jax.Array  # (A,)


@dataclasses.dataclass(frozen=True)
class AdditiveAttention:
    """Attention pooling: ``apply(params, hs, lengths) -> (context, weights)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import AdditiveAttention
      >>> att = AdditiveAttention(16)
      >>> params = att.init(jax.random.key(0), 8)
      >>> ctx, w = att.apply(params, jnp.ones((2, 5, 8)), jnp.array([5, 3]))
      >>> ctx.shape, w.shape
      ((2, 8), (2, 5))
    """

    attention_size: int
    kernel_init: str | Initializer = "glorot_uniform"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_size("AdditiveAttention", "attention_size", self.attention_size)

    def init(self, key: jax.Array, input_size: int) -> AttentionParams:
        check_size("AdditiveAttention.init", "input_size", input_size)
        A, dt = self.attention_size, self.param_dtype
        init = resolve_initializer(self.kernel_init, A, "AdditiveAttention", "kernel_init")
        k_w, k_v = jax.random.split(key)
        v = init(k_v, (A, 1), dt)[:, 0]
        return AttentionParams(w=init(k_w, (input_size, A), dt), b=jnp.zeros((A,), dt), v=v)

    def apply(self, params: AttentionParams, hs: jax.Array, lengths: jax.Array | None = None):
        """``hs: (..., T, D)``, ``lengths: (...)`` -> ``(context (..., D), weights (..., T))``."""
        p = Problems("AdditiveAttention.apply")
        if not isinstance(params, AttentionParams):
            p.type(f"`params` must be AttentionParams (from `init`); got {type(params).__name__}.")
        elif check_float_array(p, "hs", hs, 2, "(..., T, features)"):
            A, D = self.attention_size, hs.shape[-1]
            check_shapes(p, "params", params, AttentionParams((D, A), (A,), (A,)), f"{D} features")
            check_lengths(p, lengths, hs.shape[-2], hs.shape[:-2])
        p.raise_if_any()
        pdt = self.param_dtype
        u = jnp.tanh(matmul(hs, params.w, pdt, pdt) + lead(params.b, hs.ndim))  # (..., T, A)
        scores = matmul(u, params.v, pdt, pdt)  # (..., T)
        if lengths is not None:
            valid = sequence_mask(lengths, hs.shape[-2])
            scores = jnp.where(valid, scores, jnp.full_like(scores, -jnp.inf))
            weights = jax.nn.softmax(scores, axis=-1)
            weights = jnp.where(valid, weights, jnp.zeros_like(weights))  # length 0 -> all zero
        else:
            weights = jax.nn.softmax(scores, axis=-1)
        context = jnp.einsum("...t,...td->...d", weights.astype(pdt), hs.astype(pdt))
        return context, weights
