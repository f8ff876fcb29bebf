"""Compile once for eager callers too.

Called outside ``jit`` (in a notebook, while debugging), a function made of ``lax.scan`` and a
few ops is dispatched op by op, and ``lax.scan`` compiles its loop body anew on every call:
about a second per call for a small stacked LSTM. :func:`call_cached` routes such calls
through one ``jax.jit`` per function, keyed on the hashable static configuration (the cell or
layer, flags) and on the shapes and dtypes of the arrays, so the second eager call with the
same configuration and shapes reuses the compiled computation. Inside a trace (under the
caller's own ``jit``, ``grad``, ``vmap``) it calls the function directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax


def call_cached(fn: Callable[..., Any], static: Any, *dynamic: Any) -> Any:
    """``fn(static, *dynamic)``, through a cached ``jax.jit`` when ``dynamic`` is concrete.

    ``static`` must be hashable to be cached (frozen dataclasses of the library are); an
    unhashable one, or any traced leaf in ``dynamic``, runs ``fn`` directly.
    """
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(dynamic)):
        return fn(static, *dynamic)
    try:
        hash(static)
    except TypeError:
        return fn(static, *dynamic)
    return _jitted(fn)(static, *dynamic)


@functools.cache
def _jitted(fn: Callable[..., Any]) -> Callable[..., Any]:
    return jax.jit(fn, static_argnums=0)
