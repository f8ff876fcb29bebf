"""Gate and cell activations, looked up by name so cell configs stay hashable and printable."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softsign": jax.nn.soft_sign,
    "identity": lambda x: x,
}


def resolve_activation(fn: str | Activation, where: str, arg: str) -> Activation:
    """Returns the activation called ``fn`` (or ``fn`` itself when it is callable)."""
    if callable(fn):
        return fn
    try:
        return ACTIVATIONS[fn]
    except (KeyError, TypeError):
        raise ValueError(
            f"`{where}`: `{arg}` must be a callable or one of {sorted(ACTIVATIONS)}; got {fn!r}."
        ) from None
