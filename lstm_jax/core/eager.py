"""Compile once, for eager callers and eager transformations alike.

Called outside ``jit`` (in a notebook, while debugging), a function made of ``lax.scan`` and a
few ops is dispatched op by op, and ``lax.scan`` compiles its loop body anew on every call:
about a second per call for a small stacked LSTM. The same holds under an eager ``jax.grad``,
``jax.jvp`` or ``jax.vmap``: each call traces a new loop and compiles it again (2.3 s per
``jax.grad`` call of a 2-layer bidirectional ``LSTM(64)`` on a ``(8, 50, 16)`` batch, 11 ms
jitted: ``benchmarks/bench_eager.py``), and every compiled loop stays in JAX's caches with
its code mapped, so a long eager loop runs the process out of memory mappings (XLA then fails
with "LLVM compilation error: Cannot allocate memory"). :func:`call_cached` routes every such
call through one ``jax.jit`` per function, keyed on the hashable static configuration (the
cell or layer, flags) and on the shapes and dtypes of the arrays. JAX caches a jitted
function's derivatives and batched forms with it, so the second call with the same
configuration and shapes, plain or transformed, reuses the compiled computation. Inside the
caller's own ``jit`` it is a nested ``jit``, which XLA inlines.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax


def call_cached(fn: Callable[..., Any], static: Any, *dynamic: Any) -> Any:
    """``fn(static, *dynamic)``, through one cached ``jax.jit`` of ``fn``.

    ``static`` must be hashable to be cached (frozen dataclasses of the library are); an
    unhashable one runs ``fn`` directly. ``dynamic`` may hold arrays, tracers of the caller's
    transformations, and None.
    """
    try:
        hash(static)
    except TypeError:
        return fn(static, *dynamic)
    return _jitted(fn)(static, *dynamic)


@functools.cache
def _jitted(fn: Callable[..., Any]) -> Callable[..., Any]:
    return jax.jit(fn, static_argnums=0)
