"""Attention over a sequence of keys: pooling, and attention with a decoder query.

Every layer here scores each step ``t`` of ``keys: (..., T, D)``, turns the scores into weights
with a softmax over the valid steps, and returns the weighted sum of the keys::

    alpha_t = softmax_t(e_t) over t < lengths        weights   (..., T)
    context = sum_t alpha_t k_t                      context   (..., D)

They differ only in the score ``e_t``:

* :class:`AdditiveAttention` (pooling, no query): ``e_t = v . tanh(k_t @ w + b)``.
* :class:`BahdanauAttention` (additive, Bahdanau et al. 2015):
  ``e_t = v . tanh(k_t @ w_k + q @ w_q + b)`` for a query ``q: (..., Q)``, typically the
  decoder's previous hidden state.
* :class:`LuongAttention` (multiplicative, Luong et al. 2015): ``kind="dot"``:
  ``e_t = q . k_t`` (needs ``Q == D``); ``kind="general"``: ``e_t = (q @ w) . k_t`` with
  ``w: (Q, D)``. Luong's third score, ``concat``, is the additive one.

Masking. Steps ``t >= lengths`` get weight exactly 0 and never reach the context, whatever
they hold. An example of length 0 has no step to attend to: its weights are all 0 and its
context is the zero vector (no NaN, in values or gradients).

Batching. The leading dims of ``query`` and ``keys`` broadcast against each other (NumPy rules,
same rank), so one call can score the queries of every decoder step at once:
``query: (B, S, Q)`` against ``keys[:, None]: (B, 1, T, D)`` gives weights ``(B, S, T)``.

Dtypes. Scores, weights and context are computed in the promoted dtype of the params, the
query and the keys (float64 in, float64 out); ``param_dtype`` only decides what ``init`` draws.

References:
  Bahdanau, Cho & Bengio (2015), Neural machine translation by jointly learning to align and
  translate. Luong, Pham & Manning (2015), Effective approaches to attention-based neural
  machine translation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.core.checks import (
    Problems,
    check_float_array,
    check_shapes,
    check_size,
    is_array,
    is_concrete,
)
from lstm_jax.core.initializers import Initializer, resolve_initializer
from lstm_jax.core.ops import lead
from lstm_jax.core.validate import check_key
from lstm_jax.sequence.masks import sequence_mask


class AttentionParams(NamedTuple):
    """Params of :class:`AdditiveAttention`."""

    w: jax.Array  # (D, A)
    b: jax.Array  # (A,)
    v: jax.Array  # (A,)


class BahdanauParams(NamedTuple):
    """Params of :class:`BahdanauAttention`."""

    w_k: jax.Array  # (D, A) keys -> attention space
    w_q: jax.Array  # (Q, A) query -> attention space
    b: jax.Array  # (A,)
    v: jax.Array  # (A,) attention space -> score


class LuongParams(NamedTuple):
    """Params of :class:`LuongAttention`: ``w`` is None for ``kind="dot"``."""

    w: jax.Array | None = None  # (Q, D)


@dataclasses.dataclass(frozen=True)
class AdditiveAttention:
    """Attention pooling: ``apply(params, hs, lengths) -> (context, weights)``.

    Summarises a sequence of recurrent outputs ``hs: (..., T, D)`` into one ``(..., D)``
    vector with the additive score ``e_t = v . tanh(h_t @ w + b)`` (Bahdanau et al. 2015,
    without a query).

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
        key = check_key("AdditiveAttention.init", "key", key)
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
            _check_lengths(p, lengths, "hs", hs.shape[:-2], hs.shape[-2])
        p.raise_if_any()
        dt = _promoted(params, hs)
        w, b, v = (a.astype(dt) for a in params)
        u = jnp.tanh(jnp.matmul(hs.astype(dt), w) + lead(b, hs.ndim))  # (..., T, A)
        return _attend(jnp.matmul(u, v), hs.astype(dt), lengths)


@dataclasses.dataclass(frozen=True)
class BahdanauAttention:
    """Additive attention with a query: ``apply(params, query, keys, lengths)``.

    ``e_t = v . tanh(k_t @ w_k + q @ w_q + b)``, the alignment model of Bahdanau et al.
    (2015): the query is the decoder's state, the keys are the encoder's outputs.

    Args:
      attention_size: ``A``, the size of the hidden layer of the score.
      kernel_init: initialiser of ``w_k``, ``w_q`` and ``v`` (``b`` starts at zero).
      param_dtype: dtype ``init`` draws the params in.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import BahdanauAttention
      >>> att = BahdanauAttention(16)
      >>> params = att.init(jax.random.key(0), key_size=8, query_size=6)
      >>> ctx, w = att.apply(params, jnp.ones((2, 6)), jnp.ones((2, 5, 8)), jnp.array([5, 3]))
      >>> ctx.shape, w.shape, float(w[1, 3:].sum())
      ((2, 8), (2, 5), 0.0)
    """

    attention_size: int
    kernel_init: str | Initializer = "glorot_uniform"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_size("BahdanauAttention", "attention_size", self.attention_size)
        resolve_initializer(self.kernel_init, 1, "BahdanauAttention", "kernel_init")

    def init(self, key: jax.Array, key_size: int, query_size: int) -> BahdanauParams:
        check_size("BahdanauAttention.init", "key_size", key_size)
        check_size("BahdanauAttention.init", "query_size", query_size)
        A, dt = self.attention_size, self.param_dtype
        init = resolve_initializer(self.kernel_init, A, "BahdanauAttention", "kernel_init")
        k_k, k_q, k_v = jax.random.split(key, 3)
        return BahdanauParams(
            w_k=init(k_k, (key_size, A), dt),
            w_q=init(k_q, (query_size, A), dt),
            b=jnp.zeros((A,), dt),
            v=init(k_v, (A, 1), dt)[:, 0],
        )

    def apply(self, params: BahdanauParams, query, keys, lengths=None):
        """Attends from ``query`` over ``keys``.

        Args:
          params: from :meth:`init`.
          query: ``(..., Q)``, e.g. the decoder's hidden state.
          keys: ``(..., T, D)``, e.g. the encoder's outputs; also the values summed.
          lengths: optional integers of shape ``keys.shape[:-2]``: valid steps of each example.

        Returns:
          ``(context, weights)``: ``(..., D)`` and ``(..., T)``, ``...`` the broadcast of the
          leading dims of ``query`` and ``keys``.
        """
        where = "BahdanauAttention.apply"
        p = Problems(where)
        if not isinstance(params, BahdanauParams):
            p.type(f"`params` must be BahdanauParams (from `init`); got {type(params).__name__}.")
        elif _check_query_keys(p, query, keys, lengths):
            A, Q, D = self.attention_size, query.shape[-1], keys.shape[-1]
            exp = BahdanauParams((D, A), (Q, A), (A,), (A,))
            check_shapes(p, "params", params, exp, f"keys of {D} and a query of {Q} features")
        p.raise_if_any()
        dt = _promoted(params, query, keys)
        w_k, w_q, b, v = (a.astype(dt) for a in params)
        keys = keys.astype(dt)
        pk = jnp.matmul(keys, w_k)  # (..., T, A)
        pq = jnp.matmul(query.astype(dt), w_q) + lead(b, query.ndim)  # (..., A)
        u = jnp.tanh(pk + pq[..., None, :])  # (..., T, A), leading dims broadcast
        return _attend(jnp.matmul(u, v), keys, lengths)


@dataclasses.dataclass(frozen=True)
class LuongAttention:
    """Multiplicative attention with a query (Luong et al. 2015).

    ``kind="dot"``: ``e_t = q . k_t``, no params, query and keys of the same size.
    ``kind="general"``: ``e_t = (q @ w) . k_t`` with ``w: (Q, D)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import LuongAttention
      >>> att = LuongAttention("general")
      >>> params = att.init(jax.random.key(0), key_size=8, query_size=6)
      >>> ctx, w = att.apply(params, jnp.ones((2, 6)), jnp.ones((2, 5, 8)), jnp.array([5, 3]))
      >>> ctx.shape, w.shape
      ((2, 8), (2, 5))
    """

    kind: str = "dot"
    kernel_init: str | Initializer = "glorot_uniform"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.kind not in ("dot", "general"):
            raise ValueError(
                f"`LuongAttention`: `kind` must be 'dot' or 'general' (for Luong's 'concat' "
                f"score use BahdanauAttention); got {self.kind!r}."
            )
        resolve_initializer(self.kernel_init, 1, "LuongAttention", "kernel_init")

    def init(self, key: jax.Array, key_size: int, query_size: int) -> LuongParams:
        where = "LuongAttention.init"
        check_size(where, "key_size", key_size)
        check_size(where, "query_size", query_size)
        if self.kind == "dot":
            if key_size != query_size:
                raise ValueError(
                    f"`{where}`: kind='dot' scores q . k, so `key_size` and `query_size` must "
                    f"be equal; got {key_size} and {query_size}. Use kind='general' to learn "
                    "a (query_size, key_size) map."
                )
            return LuongParams()
        init = resolve_initializer(self.kernel_init, key_size, "LuongAttention", "kernel_init")
        return LuongParams(w=init(key, (query_size, key_size), self.param_dtype))

    def apply(self, params: LuongParams, query, keys, lengths=None):
        """Same arguments and returns as :meth:`BahdanauAttention.apply`."""
        p = Problems("LuongAttention.apply")
        if not isinstance(params, LuongParams):
            p.type(f"`params` must be LuongParams (from `init`); got {type(params).__name__}.")
        elif _check_query_keys(p, query, keys, lengths):
            Q, D = query.shape[-1], keys.shape[-1]
            if self.kind == "dot" and Q != D:
                p.value(
                    f"kind='dot' needs `query` and `keys` of the same features; got "
                    f"query.shape={query.shape}, keys.shape={keys.shape}."
                )
            exp = LuongParams((Q, D) if self.kind == "general" else None)
            check_shapes(p, "params", params, exp, f"kind={self.kind!r}, Q={Q}, D={D}")
        p.raise_if_any()
        dt = _promoted(params, query, keys)
        q, keys = query.astype(dt), keys.astype(dt)
        if params.w is not None:
            q = jnp.matmul(q, params.w.astype(dt))  # (..., D)
        scores = jnp.matmul(keys, q[..., :, None])[..., 0]  # (..., T)
        return _attend(scores, keys, lengths)


def _attend(scores: jax.Array, values: jax.Array, lengths):
    """Masked softmax of ``scores: (..., T)`` and the weighted sum of ``values: (..., T, D)``."""
    if lengths is None:
        weights = jax.nn.softmax(scores, axis=-1)
    else:
        valid = sequence_mask(lengths, scores.shape[-1])  # (..., T)
        # A finite floor instead of -inf keeps an all-padded row finite (uniform, then zeroed)
        # and its gradients free of NaN; exp(floor - max) underflows to exactly 0 elsewhere.
        floor = jnp.finfo(scores.dtype).min
        weights = jax.nn.softmax(jnp.where(valid, scores, floor), axis=-1)
        weights = jnp.where(valid, weights, jnp.zeros_like(weights))
        # Under jit, lengths outside [0, T] cannot raise: they make every output NaN instead
        # of silently attending to a clipped range (the rule of `lstm_jax.scan`).
        T = scores.shape[-1]
        bad = jnp.any((lengths < 0) | (lengths > T))
        weights = jnp.where(bad, jnp.full_like(weights, jnp.nan), weights)
    context = jnp.matmul(weights[..., None, :], values)[..., 0, :]  # (..., D)
    return context, weights


def _promoted(params: Any, *arrays: jax.Array):
    """JAX's standard promotion of every dtype involved, also for callers in strict mode (the
    operands are then cast explicitly)."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.result_type(*(a.dtype for a in (*jax.tree.leaves(params), *arrays)))


def _check_query_keys(p: Problems, query, keys, lengths) -> bool:
    """Checks ``query: (..., Q)``, ``keys: (..., T, D)`` and ``lengths``; returns if usable."""
    ok_q = check_float_array(p, "query", query, 1, "(..., query_size)")
    ok_k = check_float_array(p, "keys", keys, 2, "(..., T, key_size)")
    if not (ok_q and ok_k):
        return False
    lead_q, lead_k = tuple(query.shape[:-1]), tuple(keys.shape[:-2])
    fits = len(lead_q) == len(lead_k) and all(
        a == b or 1 in (a, b) for a, b in zip(lead_q, lead_k, strict=True)
    )
    if not fits:
        p.value(
            f"the leading dims of `query` {lead_q} and `keys` {lead_k} must broadcast (same "
            f"rank, each dim equal or 1); got query.shape={query.shape}, keys.shape={keys.shape}."
        )
        return False
    _check_lengths(p, lengths, "keys", lead_k, keys.shape[-2])
    return True


def _check_lengths(p: Problems, lengths, name: str, batch_shape: tuple, T: int) -> None:
    if lengths is None:
        return
    if not is_array(lengths) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        got = getattr(lengths, "dtype", type(lengths).__name__)
        p.type(f"`lengths` must be an integer array of shape {tuple(batch_shape)}; got {got}.")
    elif tuple(lengths.shape) != tuple(batch_shape):
        p.value(
            f"`lengths` must have the leading shape of `{name}`, {tuple(batch_shape)}; got "
            f"lengths.shape={lengths.shape}."
        )
    elif is_concrete(lengths) and lengths.size:
        values = np.asarray(lengths)  # concrete: plain NumPy, no trace
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > T:
            p.value(f"`lengths` must lie in [0, T={T}]; got values from {lo} to {hi}.")
