"""An experiment: the sLSTM sequence with a hand-derived derivative, one ``jax.custom_jvp``.

Built as the LSTM's rule is (:mod:`lstm_jax.sequence.fast_lstm`) and timed against autodiff
through ``scan`` by ``bench_slstm.py``; it measured slower at M and L and in forward mode
(benchmarks/RESULTS.md), so the library does not use it. Outputs and derivatives equal
autodiff's to float rounding (the benchmark checks them before timing).

Time-major arrays ``xs (T, B, I)``, carries ``(B, H)``, no lengths or masks; gate blocks i, f, z, o;
``R`` the block-diagonal recurrent matrix (:meth:`lstm_jax.sLSTMCell.recurrent`). Forward, per
step (:class:`lstm_jax.sLSTMCell`)::

    (i~, f~, z~, o~) = x_t W_x + h_{t-1} R + b
    a = log f + m_{t-1},   m_t = max(a, i~)   (i~ when n_{t-1} = 0)
    i' = exp(i~ - m_t),  f' = exp(a - m_t),  g = tanh(z~),  o = sigma(o~)
    c_t = f' c_{t-1} + i' g,   n_t = f' n_{t-1} + i',   h_t = o q,  q = c_t / n_t

Tangent, with ``E`` every term that holds a weight, bias or input tangent (one GEMM per
term over all steps), ``w`` the share of ``m_t``'s tangent that follows ``i~`` (1 where
``i~ > a`` or at a first step, 0 where ``a > i~``, 1/2 at a tie, as ``jnp.maximum``'s) and
``kappa = 1 - sigma(f~)`` the slope of ``log sigma`` (1 for ``forget_gate="exp"``)::

    dz_t = E_t + dh_{t-1} R
    delta = kappa df~ + dm_{t-1} - di~
    dm_t = di~ + (1 - w) delta
    dc_t = A_c delta + f' dc_{t-1} + i' (1 - g^2) dz~,   A_c = f' w c_{t-1} - i' (1 - w) g
    dn_t = A_n delta + f' dn_{t-1},                      A_n = f' w n_{t-1} - i' (1 - w)
    dh_t = o (1 - o) q do~ + (o / n_t) (dc_t - q dn_t)

The loop carries ``(dh, dc, dn, dm)`` and does one block-diagonal product per step; the
coefficients are computed once over all steps from the forward pass's pre-activations. JAX
transposes the rule into the backward recurrence and batched weight gradients.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells.slstm import sLSTMCell, sLSTMState
from lstm_jax.sequence import tangents as tg


class Static(NamedTuple):
    cell: sLSTMCell  # hashable: a frozen dataclass
    unroll: int | bool = 1


def _pre(cell, p, x, h):
    """``x W_x + h R + b``: ``(B, I), (B, H) -> (B, 4H)``."""
    return x @ p.w_x + p.b[None] + cell.recurrent(p.r, h)


def _forward(st, p, xs, s0, save):
    """The recurrence. Returns ``(hs, final)`` or, with ``save``, ``(hs, final, states, zs)``:
    every step's carried state and pre-activations."""

    def step(s, x):
        z = _pre(st.cell, p, x, s.h)  # (B, 4H)
        new = st.cell.gates(z, s)
        return new, ((new, z) if save else new.h)

    final, out = jax.lax.scan(step, s0, xs, unroll=st.unroll)
    return (out[0].h, final, *out) if save else (out, final)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def slstm_core(st, p, xs, s0):
    """``-> (hs (T, B, H), final sLSTMState)``; ``p`` holds ``w_x (I, 4H)``, ``r``, ``b``."""
    return _forward(st, p, xs, s0, save=False)


def _coefficients(st, zs, prev):
    """The tangent recurrence's coefficients, ``(T, B, H)`` each."""
    i_, f_, z_, o_ = jnp.split(zs, 4, axis=-1)
    if st.cell.forget_gate == "sigmoid":
        a, kappa = jax.nn.log_sigmoid(f_) + prev.m, jax.nn.sigmoid(-f_)
    else:
        a, kappa = f_ + prev.m, None
    first = prev.n == 0
    m = jnp.where(first, i_, jnp.maximum(a, i_))
    w = jnp.where(first | (a < i_), 1.0, jnp.where(a > i_, 0.0, 0.5)).astype(zs.dtype)
    i_g, f_g, g, o = jnp.exp(i_ - m), jnp.exp(a - m), jnp.tanh(z_), jax.nn.sigmoid(o_)
    c = f_g * prev.c + i_g * g
    n = f_g * prev.n + i_g
    q, P = c / n, o / n
    coef = {
        "kappa": kappa,
        "W": 1 - w,
        "A_c": f_g * w * prev.c - i_g * (1 - w) * g,
        "A_n": f_g * w * prev.n - i_g * (1 - w),
        "f": f_g,
        "B_z": i_g * (1 - g * g),
        "S_o": o * (1 - o) * q,
        "P": P,
        "Pq": P * q,
    }
    return coef


def _rec(cell, r, h):
    return None if r is None or h is None else cell.recurrent(r, h)


def _core_jvp(st, primals, tangents):
    p, xs, s0 = primals
    dp, dxs, ds0 = tg.nonzero(tangents)
    hs, final, states, zs = _forward(st, p, xs, s0, save=True)
    prev = jax.tree.map(tg.shift, s0, states)  # the carry entering each step
    k = _coefficients(st, zs, prev)
    E = tg.add(
        tg.mm(dxs, p.w_x),
        tg.mm(xs, dp.w_x),
        _rec(st.cell, dp.r, prev.h),
        tg.bias(dp.b, xs.ndim),
    )
    ds0 = sLSTMState(*(tg.or_zeros(d, a) for d, a in zip(ds0, s0, strict=True)))

    def step(d, inp):
        e, c = inp
        dz = tg.add(e, st.cell.recurrent(p.r, d.h))  # (B, 4H)
        di, df, dz_, do = jnp.split(dz, 4, axis=-1)
        delta = (df if c["kappa"] is None else c["kappa"] * df) + d.m - di
        dc = c["A_c"] * delta + c["f"] * d.c + c["B_z"] * dz_
        dn = c["A_n"] * delta + c["f"] * d.n
        new = sLSTMState(
            h=c["S_o"] * do + c["P"] * dc - c["Pq"] * dn, c=dc, n=dn, m=di + c["W"] * delta
        )
        return new, new.h

    dfinal, dhs = jax.lax.scan(step, ds0, (E, k), unroll=st.unroll)
    return (hs, final), (dhs, dfinal)


slstm_core.defjvp(_core_jvp, symbolic_zeros=True)
