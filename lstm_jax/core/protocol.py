"""The cell protocol: what every recurrent cell is, written once.

A cell is a (preferably frozen, hashable) configuration object with three pure functions::

    params = cell.init(key, input_size)           # a pytree of arrays
    carry  = cell.initial_carry(batch_shape)      # a pytree of arrays, zeros
    carry, y = cell(params, carry, x)             # one time step; x: (*batch_shape, input_size)

``batch_shape`` is one step's input shape without its last axis, ``x.shape[:-1]`` (for a
ConvLSTM frame ``(..., Hs, Ws, C)`` that includes the spatial axes). That is all
:func:`lstm_jax.scan`, the stacked and bidirectional layers, dropout and the diagnostics need;
everything else is optional and derived here when a cell does not define it:

===================  ==========================================================================
``output_size``      size of ``y``'s last axis; derived with ``jax.eval_shape`` of one step
``feature_axes``     trailing axes of ``x`` that are features, not batch or time (default 1;
                     a ConvLSTM frame ``(Hs, Ws, C)`` has 3)
``param_shapes``     ``param_shapes(input_size)``: a pytree of shape tuples, for validation;
                     derived with ``jax.eval_shape`` of ``init``
``carry_shapes``     ``carry_shapes(batch_shape)``; derived from ``initial_carry``
``short_repr``       a short name for error messages; defaults to the class name
``recurrent_mask``   a keyword of ``__call__``: a multiplier on ``h_{t-1}`` where it enters the
                     recurrent product (variational recurrent dropout); layers refuse
                     ``recurrent_dropout`` for cells without it
===================  ==========================================================================

The derivations trace the cell abstractly (no computation, no compilation) and are cached per
cell when the cell is hashable.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Params = Any
Carry = Any


@runtime_checkable
class Cell(Protocol):
    """A recurrent cell: ``init``, ``initial_carry`` and one step ``(params, carry, x)``."""

    def init(self, key: jax.Array, input_size: int) -> Params:
        """Draws the params for inputs whose last axis has ``input_size`` features."""
        ...

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> Carry:
        """The zero carry for one step's input of shape ``(*batch_shape, input_size)``
        (the built-in cells also take an int ``n`` for ``(n,)``)."""
        ...

    def __call__(self, params: Params, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
        """One step: ``(carry, x) -> (carry, y)``, the signature of a ``jax.lax.scan`` body."""
        ...


REQUIRED = ("init", "initial_carry", "__call__")


def missing_members(cell: Any) -> list[str]:
    """The required members ``cell`` lacks (empty for a cell of the protocol)."""
    return [m for m in REQUIRED if not callable(getattr(cell, m, None))]


def describe(cell: Any) -> str:
    """A short name for messages: the cell's ``short_repr()`` or its class name."""
    short = getattr(cell, "short_repr", None)
    return short() if callable(short) else type(cell).__name__


def feature_axes(cell: Any) -> int:
    """How many trailing axes of one step's input are features (1 unless the cell says)."""
    return int(getattr(cell, "feature_axes", 1))


def accepts_recurrent_mask(cell: Any) -> bool:
    """Whether ``cell.__call__`` takes a ``recurrent_mask`` keyword (or ``**kwargs``)."""
    try:
        sig = inspect.signature(cell.__call__)
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "recurrent_mask" or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in sig.parameters.values()
    )


def _cached(fn):
    """``functools.lru_cache`` keyed on the cell when it is hashable, no cache otherwise."""
    cached = functools.lru_cache(maxsize=256)(fn)

    @functools.wraps(fn)
    def wrapper(cell, *args):
        try:
            hash(cell)
        except TypeError:
            return fn(cell, *args)
        return cached(cell, *args)

    return wrapper


@_cached
def param_structure(cell: Any, input_size: int) -> Any:
    """The params ``cell.init(key, input_size)`` returns, as ``jax.ShapeDtypeStruct`` leaves."""
    return jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(0))


def param_shapes(cell: Any, input_size: int) -> Any:
    """A pytree of shape tuples for the params of ``cell`` at ``input_size``."""
    own = getattr(cell, "param_shapes", None)
    if callable(own):
        return own(input_size)
    return jax.tree.map(lambda s: tuple(s.shape), param_structure(cell, input_size))


@_cached
def carry_structure(cell: Any, batch_shape: tuple[int, ...]) -> Any:
    """``cell.initial_carry(batch_shape)`` as ``jax.ShapeDtypeStruct`` leaves."""
    return jax.eval_shape(lambda: cell.initial_carry(tuple(batch_shape)))


def carry_shapes(cell: Any, batch_shape: tuple[int, ...]) -> Any:
    """A pytree of shape tuples for the carry of ``cell`` at ``batch_shape``."""
    own = getattr(cell, "carry_shapes", None)
    if callable(own):
        return own(tuple(batch_shape))
    return jax.tree.map(lambda s: tuple(s.shape), carry_structure(cell, tuple(batch_shape)))


@_cached
def output_size(cell: Any, input_size: int) -> int:
    """Size of the last axis of ``y``: ``cell.output_size``, or one abstract step's."""
    own = getattr(cell, "output_size", None)
    if isinstance(own, int):
        return own
    spatial = (1,) * (feature_axes(cell) - 1)
    x = jax.ShapeDtypeStruct((*spatial, input_size), jnp.float32)
    params = param_structure(cell, input_size)
    carry = carry_structure(cell, spatial)
    _, y = jax.eval_shape(cell, params, carry, x)
    return int(y.shape[-1])
