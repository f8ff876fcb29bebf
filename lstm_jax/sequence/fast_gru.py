"""The GRU sequence with a hand-derived derivative, as one ``jax.custom_jvp`` for both modes.

Flat, time-major arrays as in :mod:`lstm_jax.sequence.fast_lstm`; gate blocks r, z, n; ``u`` is
the update gate (``z`` in :class:`lstm_jax.GRUCell`), ``s_a`` the slope of gate ``a``. With
``reset_after=True`` (PyTorch, cuDNN)::

    r = sigma(zx_r + zh_r),  u = sigma(zx_z + zh_z),  n = tanh(zx_n + r zh_n)
    zx = x_t W_x + b,  zh = (m h_{t-1}) W_h + [0, 0, b_hn],  h_t = (1 - u) n + u h_{t-1}

and its tangent, with ``E`` every term that holds a weight, bias, input or mask tangent (one
GEMM per term over all steps) and ``L = (m dh_{t-1}) W_h`` the one product in the loop::

    dh_t = e_t + K_r L_r + K_z L_z + K_n L_n + u dh_{t-1}
    K = [(1 - u) s_n zh_n s_r,  (h_{t-1} - n) s_u,  (1 - u) s_n r]
    e = (1 - u) s_n E_x,n + K_r E_r + K_z E_z + K_n E_h,n

With ``reset_after=False`` (Cho et al. 2014) ``n = tanh(zx_n + (r m h_{t-1}) W_hn)``, so the
loop does a second product ``(P (a_r + L_r) + r m dh_{t-1}) W_hn`` with ``P = s_r m h_{t-1}``.
The loop carries only ``dh``; JAX transposes the rule into the backward recurrence and batched
weight gradients, as for the LSTM.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.sequence import tangents as tg


class Static(NamedTuple):
    reset_after: bool = True
    unroll: int | bool = 1


def _forward(st, p, xs, h0, valid, mask, save):
    """The recurrence. Returns ``hs`` or, with ``save``, ``(hs, r, u, n, zh_n)``."""
    H = h0.shape[-1]
    b = None if p.b is None else p.b[None]  # (1, 3H)
    b_hn = None if p.b_hn is None else p.b_hn[None]  # (1, H)

    def step(h, inp):
        x, ok = inp
        zx = x @ p.w_x if b is None else x @ p.w_x + b  # (B, 3H)
        h_in = tg.masked(h, mask)
        if st.reset_after:
            zh = h_in @ p.w_h  # (B, 3H)
            zh_n = zh[:, 2 * H :] if b_hn is None else zh[:, 2 * H :] + b_hn
        else:
            zh = h_in @ p.w_h[:, : 2 * H]  # (B, 2H)
        r = jax.nn.sigmoid(zx[:, :H] + zh[:, :H])
        u = jax.nn.sigmoid(zx[:, H : 2 * H] + zh[:, H : 2 * H])
        if not st.reset_after:
            zh_n = (r * h_in) @ p.w_h[:, 2 * H :]
        n = jnp.tanh(zx[:, 2 * H :] + (r * zh_n if st.reset_after else zh_n))
        h_new = tg.keep(ok, (1 - u) * n + u * h, h)
        return h_new, ((h_new, r, u, n, zh_n) if save else h_new)

    return jax.lax.scan(step, h0, (xs, valid), unroll=st.unroll)[1]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def gru_core(st, p, xs, h0, valid, mask):
    """``-> hs (T, B, H)``; ``p`` holds ``w_x (I, 3H)``, ``w_h (H, 3H)``, ``b``, ``b_hn``."""
    return _forward(st, p, xs, h0, valid, mask, save=False)


def _blocks(a, H):
    return (None,) * 3 if a is None else (a[..., :H], a[..., H : 2 * H], a[..., 2 * H :])


def _core_jvp(st, primals, tangents):
    p, xs, h0, valid, mask = primals
    dp, dxs, dh0, _, dmask = tg.nonzero(tangents)
    H = h0.shape[-1]
    hs, r, u, n, zh_n = _forward(st, p, xs, h0, valid, mask, save=True)
    h_prev = tg.shift(h0, hs)  # (T, B, H)
    hm, hdm = tg.masked(h_prev, mask), tg.mul(h_prev, dmask)
    s_r, s_u, s_n = r * (1 - r), u * (1 - u), 1 - n * n
    Q = tg.zero_where_skipped((1 - u) * s_n, valid)
    K_z = tg.zero_where_skipped((h_prev - n) * s_u, valid)
    u_res = tg.zero_where_skipped(u, valid)
    Ex_r, Ex_z, Ex_n = _blocks(
        tg.add(tg.mm(dxs, p.w_x), tg.mm(xs, dp.w_x), tg.bias(dp.b, xs.ndim)), H
    )
    dw_h = dp.w_h
    if st.reset_after:
        Eh_r, Eh_z, Eh_n = _blocks(tg.add(tg.mm(hm, dw_h), tg.mm(hdm, p.w_h)), H)
        Eh_n = tg.add(Eh_n, tg.bias(dp.b_hn, xs.ndim))
        K_r = tg.zero_where_skipped(Q * zh_n * s_r, valid)
        K_n = tg.zero_where_skipped(Q * r, valid)
        K = jnp.concatenate([K_r, K_z, K_n], -1)  # (T, B, 3H)
        e = tg.add(
            tg.mul(Q, Ex_n),
            tg.mul(K_r, tg.add(Ex_r, Eh_r)),
            tg.mul(K_z, tg.add(Ex_z, Eh_z)),
            tg.mul(K_n, Eh_n),
        )
        dhs = _loop_after(st, p.w_h, e, K, u_res, tg.or_zeros(dh0, h0), valid, mask)
        return hs, dhs
    w_rz, w_n = p.w_h[:, : 2 * H], p.w_h[:, 2 * H :]
    dw_rz, dw_n = (None, None) if dw_h is None else (dw_h[:, : 2 * H], dw_h[:, 2 * H :])
    Eh_r, Eh_z = _blocks(tg.add(tg.mm(hm, dw_rz), tg.mm(hdm, w_rz)), H)[:2]
    En_h = tg.add(tg.mm(r * hm, dw_n), tg.mm(tg.mul(r, hdm), w_n))
    P = tg.zero_where_skipped(s_r * hm, valid)
    R = tg.zero_where_skipped(tg.masked(r, mask), valid)
    res = (P, R, Q, K_z, u_res)
    e = tg.add(tg.mul(Q, tg.add(Ex_n, En_h)), tg.mul(K_z, tg.add(Ex_z, Eh_z)))
    a_r = tg.mul(P, tg.add(Ex_r, Eh_r))
    dhs = _loop_before(st, w_rz, w_n, e, a_r, res, tg.or_zeros(dh0, h0), valid, mask)
    return hs, dhs


def _loop_after(st, w_h, e, K, u, dh0, valid, mask):
    """``reset_after=True``: ``dh_t = e_t + sum_blocks(K_t (m dh_{t-1}) W_h) + u_t dh_{t-1}``."""
    H = dh0.shape[-1]

    def step(dh, inp):
        e_t, k, u_t, ok = inp
        v = k * (tg.masked(dh, mask) @ w_h)  # (B, 3H)
        dh_new = tg.add(e_t, v[:, :H] + v[:, H : 2 * H] + v[:, 2 * H :] + u_t * dh)
        dh_new = tg.keep(ok, dh_new, dh)
        return dh_new, dh_new

    return jax.lax.scan(step, dh0, (e, K, u, valid), unroll=st.unroll)[1]


def _loop_before(st, w_rz, w_n, e, a_r, res, dh0, valid, mask):
    """``reset_after=False``: two products per step, ``(m dh) W_rz`` then ``(...) W_hn``."""
    H = dh0.shape[-1]

    def step(dh, inp):
        e_t, a_t, (P, R, Q, K_z, u), ok = inp
        L = tg.masked(dh, mask) @ w_rz  # (B, 2H)
        w = tg.add(a_t, P * L[:, :H] + R * dh) @ w_n  # (B, H)
        dh_new = tg.add(e_t, Q * w + K_z * L[:, H:] + u * dh)
        dh_new = tg.keep(ok, dh_new, dh)
        return dh_new, dh_new

    return jax.lax.scan(step, dh0, (e, a_r, res, valid), unroll=st.unroll)[1]


gru_core.defjvp(_core_jvp, symbolic_zeros=True)
