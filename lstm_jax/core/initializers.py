"""Weight initialisers for the gate matrices, applied one gate block at a time.

A fused matrix ``w`` of shape ``(fan_in, n_gates * hidden)`` is initialised block by block, so
each gate gets the statistics it would get as a separate ``(fan_in, hidden)`` matrix (as in
Flax's and Haiku's per-gate Dense layers): Glorot/Xavier uniform for input weights (the article's
``WeightInit.XAVIER``), orthogonal for recurrent weights (Saxe et al. 2014), or PyTorch's
``U(-1/sqrt(hidden), 1/sqrt(hidden))``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]

_NAMED: dict[str, Callable[[int], Initializer]] = {
    "glorot_uniform": lambda h: jax.nn.initializers.glorot_uniform(),
    "xavier_uniform": lambda h: jax.nn.initializers.glorot_uniform(),
    "orthogonal": lambda h: jax.nn.initializers.orthogonal(),
    "lecun_normal": lambda h: jax.nn.initializers.lecun_normal(),
    "zeros": lambda h: jax.nn.initializers.zeros,
    # PyTorch's nn.LSTM / nn.GRU default: every weight ~ U(-1/sqrt(H), 1/sqrt(H)).
    "uniform": lambda h: _symmetric_uniform(h**-0.5),
}


def _symmetric_uniform(bound: float) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def resolve_initializer(init: str | Initializer, hidden: int, where: str, arg: str) -> Initializer:
    if not callable(init):
        try:
            init = _NAMED[init](hidden)
        except (KeyError, TypeError):
            raise ValueError(
                f"`{where}`: `{arg}` must be a callable `(key, shape, dtype) -> array` or one of "
                f"{sorted(_NAMED)}; got {init!r}."
            ) from None
    return _at_least_f32(init)


def _at_least_f32(init: Initializer) -> Initializer:
    """``init`` drawn in float32 and cast when asked for a narrower float (bf16, f16).

    The orthogonal initialiser's QR decomposition has no bfloat16 kernel on CPU, and low
    precision draws lose the statistics the initialisers are chosen for.
    """

    def draw(key, shape, dtype=jnp.float32):
        if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
            return init(key, shape, jnp.float32).astype(dtype)
        return init(key, shape, dtype)

    return draw


def gate_blocks(init: Initializer, key, fan_in: int, hidden: int, n_gates: int, dtype) -> jax.Array:
    """``(fan_in, n_gates * hidden)`` matrix made of ``n_gates`` independently drawn blocks."""
    keys = jax.random.split(key, n_gates)
    return jnp.concatenate([init(k, (fan_in, hidden), dtype) for k in keys], axis=-1)
