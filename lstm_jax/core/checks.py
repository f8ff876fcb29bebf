"""Input validation shared by every public entry point.

Checks run in plain Python on ``.shape`` and ``.dtype`` (free under ``jit``), collect every
problem with the call, and raise once: a ``TypeError`` when any argument is the wrong kind of
object, a ``ValueError`` otherwise. Messages name the function and the argument, say what was
expected and why, and what arrived.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class Problems:
    """Collects the problems of one call so they are reported together."""

    def __init__(self, where: str):
        self.where = where
        self.type_errors: list[str] = []
        self.value_errors: list[str] = []

    def type(self, msg: str) -> None:
        self.type_errors.append(msg)

    def value(self, msg: str) -> None:
        self.value_errors.append(msg)

    def raise_if_any(self) -> None:
        msgs = self.type_errors + self.value_errors
        if not msgs:
            return
        text = f"`{self.where}`: " + "\n  ".join(msgs)
        raise (TypeError if self.type_errors else ValueError)(text)


def is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def check_float_array(p: Problems, name: str, x: Any, min_ndim: int, layout: str) -> bool:
    """Checks that ``x`` is a floating array of rank >= ``min_ndim``; returns whether it is."""
    if not is_array(x):
        p.type(f"`{name}` must be an array of shape {layout}; got {type(x).__name__}.")
        return False
    if not jnp.issubdtype(x.dtype, jnp.floating):
        p.type(
            f"`{name}` must be a floating array (float32, bfloat16, float64, ...); got "
            f"dtype={x.dtype}. Cast it, e.g. `{name}.astype(jnp.float32)`."
        )
        return False
    if x.ndim < min_ndim:
        p.value(
            f"`{name}` must have shape {layout} (rank >= {min_ndim}); got {name}.shape={x.shape}."
        )
        return False
    return True


def check_shapes(p: Problems, name: str, tree: Any, expected: Any, why: str) -> None:
    """Compares a pytree of arrays against a pytree of expected shapes (tuples)."""
    try:
        got = jax.tree.map(lambda a: a, tree)
        got_struct = jax.tree.structure(got)
        exp_struct = jax.tree.structure(expected, is_leaf=_is_shape)
    except Exception as e:  # pragma: no cover - defensive
        p.type(f"`{name}` is not a pytree of arrays: {e}")
        return
    if got_struct != exp_struct:
        p.type(
            f"`{name}` does not have the structure {why} expects.\n"
            f"    expected: {exp_struct}\n    got:      {got_struct}"
        )
        return
    paths = jax.tree_util.tree_flatten_with_path(got)[0]
    exp_leaves = jax.tree.leaves(expected, is_leaf=_is_shape)
    for (path, leaf), shape in zip(paths, exp_leaves, strict=True):
        label = name + jax.tree_util.keystr(path)
        if not is_array(leaf):
            p.type(f"`{label}` must be an array of shape {shape}; got {type(leaf).__name__}.")
        elif tuple(leaf.shape) != tuple(shape):
            p.value(f"`{label}` must have shape {tuple(shape)} ({why}); got shape {leaf.shape}.")
        elif not jnp.issubdtype(leaf.dtype, jnp.floating):
            p.type(f"`{label}` must be floating; got dtype={leaf.dtype}.")


def is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def as_batch_shape(where: str, batch_shape: Any) -> tuple[int, ...]:
    """``batch_shape`` as a tuple of ints >= 0 (or ``jax.export``'s symbolic dimensions); an int
    ``n`` is the batch ``(n,)``."""
    if isinstance(batch_shape, (int, np.integer)) and not isinstance(batch_shape, bool):
        batch_shape = (batch_shape,)
    try:
        dims = tuple(batch_shape)
    except TypeError:
        dims = None

    def dim(d):
        return (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) or (
            jax.export.is_symbolic_dim(d)
        )

    if dims is None or not all(dim(d) for d in dims):
        raise TypeError(
            f"`{where}`: `batch_shape` must be a tuple of ints (the input's shape without its "
            f"last axis, e.g. `(batch,)`) or an int; got {batch_shape!r}."
        )
    if any(isinstance(d, (int, np.integer)) and d < 0 for d in dims):
        raise ValueError(f"`{where}`: `batch_shape` must not be negative; got {dims}.")
    return tuple(int(d) if isinstance(d, (int, np.integer)) else d for d in dims)


def _is_shape(s: Any) -> bool:
    """A shape is a plain tuple of ints or symbolic dimensions (``jax.export``'s shape
    polymorphism), so a params tuple of shapes is not itself a shape."""
    return type(s) is tuple and all(isinstance(d, int) or jax.export.is_symbolic_dim(d) for d in s)


def check_size(where: str, name: str, value: Any) -> None:
    """Raises unless ``value`` is a positive int (a layer size, a count)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{where}`: `{name}` must be a positive int; got {value!r}.")


def check_params(p: Problems, cell: Any, params: Any, params_type: type) -> int | None:
    """Checks ``params`` against ``cell.param_shapes``; returns the input size they imply."""
    if not isinstance(params, params_type):
        p.type(
            f"`params` must be a {params_type.__name__} (from `{type(cell).__name__}.init`); "
            f"got {type(params).__name__}."
        )
        return None
    w_x = params.w_x
    if not hasattr(w_x, "shape") or len(w_x.shape) != 2:
        p.value(
            f"`params.w_x` must be a matrix (input_size, ...); got {getattr(w_x, 'shape', w_x)}."
        )
        return None
    check_shapes(p, "params", params, cell.param_shapes(w_x.shape[0]), cell.short_repr())
    return int(w_x.shape[0])


def check_features(p: Problems, cell: Any, name: str, x: Any, input_size: int | None) -> bool:
    """Checks the last axis of ``x`` against the params' input size."""
    if input_size is None or x.shape[-1] == input_size:
        return input_size is not None
    p.value(
        f"`{name}` has {x.shape[-1]} features but `params` expect {input_size} "
        f"(input_size of {cell.short_repr()}); got {name}.shape={x.shape}."
    )
    return False


def check_step(cell: Any, params_type: type, params: Any, carry: Any, x: Any, where: str) -> None:
    """Raises a clear error unless params, carry and one step's ``x`` fit ``cell``."""
    p = Problems(where)
    input_size = check_params(p, cell, params, params_type)
    if check_float_array(p, "x", x, 1, "(..., input_size)"):
        if check_features(p, cell, "x", x, input_size):
            check_shapes(p, "carry", carry, cell.carry_shapes(x.shape[:-1]), "batch of `x`")
    p.raise_if_any()
