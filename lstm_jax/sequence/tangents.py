"""Helpers for the fast paths' ``jax.custom_jvp`` rules (``fast_lstm``, ``fast_gru``, ...).

The rules get their tangents with ``symbolic_zeros=True``: a tangent that is known to be zero
(the inputs when only params are differentiated, a dropout mask, ...) arrives as a
``SymbolicZero`` and every product it would enter is skipped. Here such a tangent is ``None``,
and the helpers build sums of products that leave the ``None`` terms out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero


def nonzero(tree):
    """The tangent pytree with every ``SymbolicZero`` replaced by ``None``."""
    return jax.tree.map(
        lambda t: None if isinstance(t, SymbolicZero) else t,
        tree,
        is_leaf=lambda t: isinstance(t, SymbolicZero),
    )


def mm(a, w):
    """``a @ w`` over the flattened leading axes: ``(..., K) @ (K, N) -> (..., N)``; None when
    either factor is None (a zero tangent). One GEMM over all steps, which transposes to the
    batched weight-gradient product ``A^T dZ``."""
    if a is None or w is None:
        return None
    out = a.reshape(-1, a.shape[-1]) @ w
    return out.reshape(a.shape[:-1] + (w.shape[-1],))


def _lead(m, ndim):
    return m.reshape((1,) * (ndim - m.ndim) + m.shape)


def mul(a, b):
    """``a * b`` (``b`` may have fewer leading axes, e.g. a ``(B, H)`` mask against
    ``(T, B, H)``); None when either is None."""
    return None if a is None or b is None else a * _lead(b, a.ndim)


def add(*terms):
    """The sum of the terms that are not None; None when all are."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def bias(db, ndim):
    """A bias tangent ``(N,)`` shaped to broadcast against ``(..., N)``; None stays None."""
    return None if db is None else db.reshape((1,) * (ndim - 1) + db.shape)


def or_zeros(t, like):
    return jnp.zeros_like(like) if t is None else t


def shift(first, seq):
    """``(first, seq[:-1])`` along time: the carry entering each step."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def masked(h, mask):
    """``mask * h``, the recurrent input under variational dropout; ``h`` without a mask."""
    return h if mask is None else h * _lead(mask, h.ndim)


def zero_where_skipped(a, valid):
    """Zeroes a residual at skipped steps, so a zero cotangent there never meets inf/NaN."""
    return a if valid is None else jnp.where(valid, a, jnp.zeros_like(a))


def keep(ok, new, old):
    """``new`` at valid steps, ``old`` (the carry kept) where ``ok`` is False."""
    return new if ok is None else jnp.where(ok, new, old)
