"""The simple (Elman) RNN sequence with a hand-derived derivative, as one ``jax.custom_jvp``.

Flat, time-major arrays as in :mod:`lstm_jax.sequence.fast_lstm`. Forward and tangent::

    h_t  = tanh(x_t W_x + (m h_{t-1}) W_h + b)
    E_t  = dx_t W_x + x_t dW_x + (m h_{t-1}) dW_h + (dm h_{t-1}) W_h + db    all t at once
    dh_t = s_t (E_t + (m dh_{t-1}) W_h),   s_t = 1 - h_t^2

The loop carries only ``dh``; JAX transposes the linear rule into the backward recurrence and
batched weight-gradient products.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.sequence import tangents as tg


class Static(NamedTuple):
    unroll: int | bool = 1


def _forward(st, p, xs, h0, valid, mask):
    b = None if p.b is None else p.b[None]  # (1, H)

    def step(h, inp):
        x, ok = inp
        z = x @ p.w_x + tg.masked(h, mask) @ p.w_h
        h_new = tg.keep(ok, jnp.tanh(z if b is None else z + b), h)
        return h_new, h_new

    return jax.lax.scan(step, h0, (xs, valid), unroll=st.unroll)[1]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def rnn_core(st, p, xs, h0, valid, mask):
    """``-> hs (T, B, H)``, every step's carried ``h``; ``p`` holds ``w_x``, ``w_h``, ``b``."""
    return _forward(st, p, xs, h0, valid, mask)


def _core_jvp(st, primals, tangents):
    p, xs, h0, valid, mask = primals
    dp, dxs, dh0, _, dmask = tg.nonzero(tangents)
    hs = _forward(st, p, xs, h0, valid, mask)
    s = tg.zero_where_skipped(1 - hs * hs, valid)  # (T, B, H)
    h_prev = tg.shift(h0, hs)
    E = tg.add(
        tg.mm(dxs, p.w_x),
        tg.mm(xs, dp.w_x),
        tg.mm(tg.masked(h_prev, mask), dp.w_h),
        tg.mm(tg.mul(h_prev, dmask), p.w_h),
        tg.bias(dp.b, xs.ndim),
    )
    e = tg.mul(s, E)

    def step(dh, inp):
        e_t, s_t, ok = inp
        dh_new = tg.add(e_t, s_t * (tg.masked(dh, mask) @ p.w_h))
        dh_new = tg.keep(ok, dh_new, dh)
        return dh_new, dh_new

    dh0 = tg.or_zeros(dh0, h0)
    dhs = jax.lax.scan(step, dh0, (e, s, valid), unroll=st.unroll)[1]
    return hs, dhs


rnn_core.defjvp(_core_jvp, symbolic_zeros=True)
