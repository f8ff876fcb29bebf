"""Weights to and from PyTorch, Keras 3 and Flax.

Each ``from_*`` takes the peer's object (or its state dict / weights / param tree) and returns
``(layer, params)`` (or ``(cell, params)`` for a single cell) such that
``layer.apply(params, xs)`` reproduces the peer; each ``to_*`` builds the peer's object with the
same outputs. The frameworks are imported only when a converter runs, so importing this module
needs none of them; it is not imported by ``import lstm_jax``.
"""

from lstm_jax.interop.flax_weights import from_flax, to_flax
from lstm_jax.interop.keras_weights import from_keras, to_keras
from lstm_jax.interop.torch_weights import from_torch, to_torch

__all__ = ["from_flax", "from_keras", "from_torch", "to_flax", "to_keras", "to_torch"]
