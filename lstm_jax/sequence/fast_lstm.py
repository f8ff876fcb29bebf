"""The LSTM sequence with a hand-derived derivative, as one ``jax.custom_jvp`` for both modes.

Flat, time-major arrays throughout: ``xs (T, B, I)``, carries ``(B, H)``, an optional validity
mask ``valid (T, B, 1)`` and an optional recurrent mask ``m (B, H)``; :mod:`lstm_jax.sequence.fast`
reshapes to and from the user's layout.

Forward, per step (gate blocks packed i, f, g, o; the 1997 cell without forget gate packs i, g, o
and has ``f = 1``)::

    z_t = x_t W_x + (m h_{t-1}) W_h + b
    i, f, o = sigma(z_i), sigma(z_f), sigma(z_o);  g = tanh(z_g)
    c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)

Tangent (the JVP), with ``d`` marking a tangent and ``s`` each gate's slope
(``sigma' = a (1 - a)``, ``tanh' = 1 - g^2``)::

    E_t   = dx_t W_x + x_t dW_x + (m h_{t-1}) dW_h + (dm h_{t-1}) W_h + db    all t at once
    dz_t  = E_t + (m dh_{t-1}) W_h                                            the recurrence
    u_t   = dz_t K_t,   K = [s_i g, s_f c_{t-1}, s_g i, s_o tanh(c_t)]
    dc_t  = u_i + u_f + u_g + f dc_{t-1};   dh_t = u_o + o (1 - tanh^2(c_t)) dc_t

Every term with a weight or input tangent is in ``E``, one GEMM per term over all ``T B`` rows
before the loop; the loop carries only ``(dh, dc)`` and does one ``(B, H) x (H, 4H)`` product per
step. The rule is linear in the tangents, so JAX transposes it into the reverse pass: the loop
becomes the backward recurrence ``dz_t -> dh_{t-1} = m (dz_t W_h^T)`` and each ``E`` term the
batched weight gradient (``dW_x = X^T dZ``, ``dW_h = (m H_prev)^T dZ``, ``db = sum dZ``,
``dX = dZ W_x^T``). ``jax.jvp``, ``jax.jacfwd``, Hessian-vector products (the rule is made of
ordinary primitives, so it can itself be differentiated), ``vmap`` and ``jax.checkpoint``
therefore all work, from one rule.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.sequence import tangents as tg


class Static(NamedTuple):
    """Hashable options of the core (its ``nondiff_argnums`` argument)."""

    forget_gate: bool = True
    unroll: int | bool = 1
    stack: bool = False  # one product [x_t, m h_{t-1}] [W_x; W_h] per step instead of two
    gates_major: bool = False  # the forward loop's products as (G*H, B), then transposed


def _acts(z, forget_gate, packed=False):
    """Gate activations ``(B, G*H)``: sigmoid on i, f, o and tanh on g, same packing as ``z``.

    ``packed``: one ``tanh`` over the whole row, with ``sigma(z) = (1 + tanh(z / 2)) / 2`` on
    the sigmoid blocks, for a loop that stores the row anyway: one fusion per step instead of
    one per gate block and a concatenation (forward mode ran 8-9 % faster, the training step
    as fast, and it compiled one fusion fewer; benchmarks/RESULTS.md). A loop that only reads
    the gates keeps the blocks apart, which XLA fuses into their consumers.
    """
    G = 4 if forget_gate else 3
    gate = 2 if forget_gate else 1
    if packed:
        H = z.shape[-1] // G
        row = (1,) * (z.ndim - 1) + (G * H,)
        is_g = jnp.repeat(jnp.arange(G) == gate, H).reshape(row)  # a constant
        half = jnp.where(is_g, 1.0, 0.5).astype(z.dtype)
        return jnp.where(is_g, 0.0, 0.5).astype(z.dtype) + half * jnp.tanh(half * z)
    blocks = jnp.split(z, G, axis=-1)
    return jnp.concatenate(
        [jnp.tanh(zb) if k == gate else jax.nn.sigmoid(zb) for k, zb in enumerate(blocks)], -1
    )


def _split(a, forget_gate):
    """``(..., G*H) -> (i, f, g, o)``; ``f`` is None without a forget gate."""
    if forget_gate:
        return tuple(jnp.split(a, 4, axis=-1))
    i, g, o = jnp.split(a, 3, axis=-1)
    return i, None, g, o


def _gates_major(w_xt, x, w_ht, h):
    """``x W_x + h W_h`` computed as ``(W_x^T x^T + W_h^T h^T)^T``: weights ``(G*H, K)``, rows
    ``(B, K)`` -> ``(B, G*H)``. XLA's CPU products ran faster in this orientation for a small
    batch and wide gates (``fast.py``); one transpose of the sum instead of one per product ran
    the forward 1.4-1.7x faster again (benchmarks/RESULTS.md)."""
    nt = (((1,), (1,)), ((), ()))  # contract both operands' last axis
    return (jax.lax.dot_general(w_xt, x, nt) + jax.lax.dot_general(w_ht, h, nt)).T


def _forward(st, p, xs, h0, c0, valid, mask, save):
    """The recurrence. Returns ``(hs, c_T)``, or with ``save`` ``(hs, c_T, cs, acts)``."""
    w = jnp.concatenate([p.w_x, p.w_h], 0) if st.stack else None  # (I + H, G*H)
    b = None if p.b is None else p.b[None]  # (1, G*H)
    w_xt, w_ht = (p.w_x.T, p.w_h.T) if st.gates_major else (None, None)  # once, outside the loop

    def step(carry, inp):
        h, c = carry
        x, ok = inp
        if st.stack:
            z = jnp.concatenate([x, tg.masked(h, mask)], -1) @ w
        elif st.gates_major:
            z = _gates_major(w_xt, x, w_ht, tg.masked(h, mask))
        else:
            z = x @ p.w_x + tg.masked(h, mask) @ p.w_h  # (B, G*H)
        a = _acts(z if b is None else z + b, st.forget_gate, packed=save)
        i, f, g, o = _split(a, st.forget_gate)
        c_new = i * g + (c if f is None else f * c)
        h_new, c_new = tg.keep(ok, o * jnp.tanh(c_new), h), tg.keep(ok, c_new, c)
        return (h_new, c_new), ((h_new, c_new, a) if save else h_new)

    (_, c_T), out = jax.lax.scan(step, (h0, c0), (xs, valid), unroll=st.unroll)
    return (out[0], c_T, *out[1:]) if save else (out, c_T)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def lstm_core(st, p, xs, h0, c0, valid, mask):
    """``-> (hs (T, B, H), c_T (B, H))``: every step's carried ``h`` and the final cell state.

    ``p`` holds ``w_x (I, G*H)``, ``w_h (H, G*H)`` and ``b (G*H,)`` or None.
    """
    return _forward(st, p, xs, h0, c0, valid, mask, save=False)


def _residuals(st, acts, cs, c0, valid):
    """``K (T, B, G*H)``, ``f (T, B, H)`` (None without a forget gate), ``q = o (1 - tc^2)``."""
    i, f, g, o = _split(acts, st.forget_gate)
    tcs = jnp.tanh(cs)  # once over all steps: cheaper than a fourth output of the loop
    gate = 2 if st.forget_gate else 1
    blocks = jnp.split(acts, 4 if st.forget_gate else 3, axis=-1)
    slope = [1 - a * a if k == gate else a * (1 - a) for k, a in enumerate(blocks)]
    cp = tg.shift(c0, cs)  # (T, B, H): c_{t-1}
    scale = [g] + ([] if f is None else [cp]) + [i, tcs]
    K = jnp.concatenate([s * a for s, a in zip(scale, slope, strict=True)], -1)
    q = o * (1 - tcs * tcs)
    return tg.zero_where_skipped(K, valid), f, tg.zero_where_skipped(q, valid)


def _external(p, dp, xs, dxs, h_prev, mask, dmask):
    """``E (T, B, G*H)``: every tangent term that does not depend on ``dh``; None when zero."""
    hm = tg.masked(h_prev, mask)
    return tg.add(
        tg.mm(dxs, p.w_x),
        tg.mm(xs, dp.w_x),
        tg.mm(hm, dp.w_h),
        tg.mm(tg.mul(h_prev, dmask), p.w_h),
        tg.bias(dp.b, xs.ndim),
    )


def _tangent_scan(st, w_h, E, K, f, q, dh0, dc0, valid, mask):
    """The linear recurrence in ``(dh, dc)``. Returns ``(dhs (T, B, H), dc_T)``."""

    def step(carry, inp):
        dh, dc = carry
        e, k, f_t, q_t, ok = inp
        dz = tg.add(e, tg.masked(dh, mask) @ w_h)  # (B, G*H)
        u = _split(dz * k, st.forget_gate)
        dc_new = u[0] + u[2] + (dc if f_t is None else u[1] + f_t * dc)
        dh_new = u[3] + q_t * dc_new
        dh_new, dc_new = tg.keep(ok, dh_new, dh), tg.keep(ok, dc_new, dc)
        return (dh_new, dc_new), dh_new

    (_, dc_T), dhs = jax.lax.scan(step, (dh0, dc0), (E, K, f, q, valid), unroll=st.unroll)
    return dhs, dc_T


def _core_jvp(st, primals, tangents):
    p, xs, h0, c0, valid, mask = primals
    dp, dxs, dh0, dc0, _, dmask = tg.nonzero(tangents)
    hs, c_T, cs, acts = _forward(st, p, xs, h0, c0, valid, mask, save=True)
    K, f, q = _residuals(st, acts, cs, c0, valid)
    E = _external(p, dp, xs, dxs, tg.shift(h0, hs), mask, dmask)
    dh0, dc0 = tg.or_zeros(dh0, h0), tg.or_zeros(dc0, c0)
    dhs, dc_T = _tangent_scan(st, p.w_h, E, K, f, q, dh0, dc0, valid, mask)
    return (hs, c_T), (dhs, dc_T)


lstm_core.defjvp(_core_jvp, symbolic_zeros=True)
