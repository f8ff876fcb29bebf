"""Ways to run the sLSTM's recurrence, timed side by side against the default (``lstm_jax.scan``).

Usage::

    python benchmarks/bench_slstm.py               # S, M, L below, 7 rounds
    python benchmarks/bench_slstm.py --rounds 3
    python benchmarks/bench_slstm.py --quick       # a tiny smoke run (seconds)

The sLSTM has no parallel form, so its training step is a reverse pass through ``scan``. Each
variant computes the same function; the script first checks its gradients against the
default's, then times the training step (``grad`` of ``mean(ys ** 2) + mean(sin(c_T))`` with
respect to params and inputs) in rounds that interleave the variants:

* ``scan``: ``lstm_jax.scan(sLSTMCell, ...)``, what every sLSTM layer runs.
* ``hoisted x W_x``: the input product for all steps as one GEMM before the loop (as cuDNN and
  torch do), the loop adding only the block-diagonal recurrent product.
* ``head-major``: ``W_x``, ``b`` permuted once so each head's four gate blocks are adjacent;
  the recurrent einsum's output then needs no transpose per step.
* ``hand JVP of the gates``: the arithmetic after the products (stabiliser, exponential gates,
  normaliser) as a ``jax.custom_jvp`` with its derivative written out, so the reverse pass
  transposes a shorter chain of operations than autodiff's.
* ``hand rule over the sequence``: ``slstm_rule.py``, the whole sequence as one
  ``jax.custom_jvp`` built like the LSTM's default rule (tangent loop in ``(dh, dc, dn, dm)``,
  weight and input tangents as batched products outside it); it is also timed in forward mode
  (``jax.jvp``) against the default, since one rule serves both modes.

A second table splits the default's time: forward only, ``grad`` with respect to the inputs
only (the backward recurrence without weight gradients) and the full training step.
Milliseconds, medians over rounds; ratios are the variant's time / the default's.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import slstm_rule

import lstm_jax as lj
from lstm_jax.cells.slstm import sLSTMState

SHAPES = {  # (B, T, I, H, heads)
    "S": (32, 100, 1, 50, 1),
    "M": (64, 100, 128, 256, 4),
    "L": (32, 64, 256, 512, 4),
}
QUICK = {"tiny": (4, 12, 3, 8, 2)}


def _time_major(xs):
    return jnp.swapaxes(xs, 0, 1)


def run_scan(cell, p, xs):
    return lj.scan(cell, p, xs)


def run_hoisted(cell, p, xs):
    B, T, I = xs.shape
    zx = _time_major((xs.reshape(B * T, I) @ p.w_x + p.b).reshape(B, T, -1))  # (T, B, 4H)

    def step(carry, z):
        new = cell.gates(z + cell.recurrent(p.r, carry.h), carry)
        return new, new.h

    final, hs = jax.lax.scan(step, cell.initial_carry((B,)), zx)
    return final, _time_major(hs)


def run_head_major(cell, p, xs):
    """Gates of head ``k`` in columns ``[4 D k, 4 D (k + 1))``, carries ``(B, NH, D)``."""
    B, _, I = xs.shape
    NH, D, H = cell.num_heads, cell.head_size, cell.hidden_size
    w = p.w_x.reshape(I, 4, NH, D).transpose(0, 2, 1, 3).reshape(I, NH, 4 * D)
    b = p.b.reshape(4, NH, D).transpose(1, 0, 2).reshape(NH, 4 * D)

    def step(carry, x):
        z = jnp.einsum("bi,ikg->bkg", x, w) + b + jnp.einsum("bkd,kdg->bkg", carry.h, p.r)
        new = cell.gates(z, carry)  # blocks i, f, z, o of D columns within each head
        return new, new.h.reshape(B, H)

    c0 = jax.tree.map(lambda a: a.reshape(B, NH, D), cell.initial_carry((B,)))
    final, hs = jax.lax.scan(step, c0, _time_major(xs))
    return jax.tree.map(lambda a: a.reshape(B, H), final), _time_major(hs)


@jax.custom_jvp
def _gates(z, c_p, n_p, m_p):
    """``sLSTMCell.gates`` (sigmoid forget gate), which reads only the carry's c, n and m."""
    prev = sLSTMState(h=jnp.zeros_like(c_p), c=c_p, n=n_p, m=m_p)
    return tuple(lj.sLSTMCell(z.shape[-1] // 4).gates(z, prev))


@_gates.defjvp
def _gates_jvp(primals, tangents):
    """Forward and tangent of the sigmoid-forget sLSTM gates (cell docstring's equations)."""
    z, c_p, n_p, m_p = primals
    dz, dc_p, dn_p, dm_p = tangents
    i_, f_, z_, o_ = jnp.split(z, 4, axis=-1)
    di, df, dg_in, do_in = jnp.split(dz, 4, axis=-1)
    a = jax.nn.log_sigmoid(f_) + m_p  # log f_t + m_{t-1}
    first = n_p == 0
    m = jnp.where(first, i_, jnp.maximum(a, i_))
    i_g, f_g, g, o = jnp.exp(i_ - m), jnp.exp(a - m), jnp.tanh(z_), jax.nn.sigmoid(o_)
    c = f_g * c_p + i_g * g
    n = f_g * n_p + i_g
    q = c / n
    da = (1 - jax.nn.sigmoid(f_)) * df + dm_p
    # jnp.maximum's derivative splits evenly at a tie, as autodiff's does
    w = jnp.where(first | (a < i_), 1.0, jnp.where(a > i_, 0.0, 0.5)).astype(z.dtype)
    dm = w * di + (1 - w) * da
    di_g, df_g = i_g * (di - dm), f_g * (da - dm)
    dc = df_g * c_p + f_g * dc_p + di_g * g + i_g * (1 - g * g) * dg_in
    dn = df_g * n_p + f_g * dn_p + di_g
    dh = o * (1 - o) * q * do_in + o * (dc - q * dn) / n
    return (o * q, c, n, m), (dh, dc, dn, dm)


def run_hand_jvp(cell, p, xs):
    def step(carry, x):
        z = x @ p.w_x + p.b + cell.recurrent(p.r, carry.h)
        new = sLSTMState(*_gates(z, carry.c, carry.n, carry.m))
        return new, new.h

    final, hs = jax.lax.scan(step, cell.initial_carry((xs.shape[0],)), _time_major(xs))
    return final, _time_major(hs)


def run_rule(cell, p, xs):
    st = slstm_rule.Static(cell)
    hs, final = slstm_rule.slstm_core(st, p, _time_major(xs), cell.initial_carry((xs.shape[0],)))
    return final, _time_major(hs)


VARIANTS = {
    "scan (default)": run_scan,
    "hoisted x W_x": run_hoisted,
    "head-major": run_head_major,
    "hand JVP of the gates": run_hand_jvp,
    "hand rule over the sequence": run_rule,
}


def loss_fn(run, cell):
    def loss(p, xs):
        final, ys = run(cell, p, xs)
        return jnp.mean(ys**2) + jnp.mean(jnp.sin(final.c))

    return loss


JVP_ROWS = ("scan (default)", "hand rule over the sequence")


def _jvp(loss):
    """``jax.jvp`` of ``loss`` at ``(p, xs)`` along ``(p, xs)`` itself."""
    return lambda p, xs: jax.jvp(loss, (p, xs), (p, xs))


def median_ms(fns, args, rounds, reps):
    """``name -> median ms`` over ``rounds`` that interleave ``fns``, ``reps`` calls each."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                jax.block_until_ready(f(*args))
            times[k].append((time.perf_counter() - t0) / reps * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one tiny shape, one round")
    a = ap.parse_args(argv)
    shapes, rounds, reps = (QUICK, 1, 1) if a.quick else (SHAPES, a.rounds, a.reps)
    print(
        f"jax {jax.__version__} ({jax.default_backend()}), python {platform.python_version()}, "
        f"{platform.machine()}; float32; {rounds} rounds x {reps} calls"
    )
    for name, (B, T, I, H, NH) in shapes.items():
        cell = lj.sLSTMCell(H, num_heads=NH, recurrent_init="glorot_uniform")
        p = cell.init(jax.random.key(0), I)
        xs = jax.random.normal(jax.random.key(1), (B, T, I))
        train = {k: jax.jit(jax.grad(loss_fn(v, cell), (0, 1))) for k, v in VARIANTS.items()}
        want = jax.tree.leaves(train["scan (default)"](p, xs))
        for k, f in train.items():
            got = jax.tree.leaves(f(p, xs))
            err = max(float(jnp.max(jnp.abs(g - w))) for g, w in zip(got, want, strict=True))
            if err > 1e-4:
                raise SystemExit(f"{k}: gradients differ from the default's by {err:.1e}")
        ms = median_ms(train, (p, xs), rounds, reps)
        base = ms["scan (default)"]
        print(f"\n{name}: B={B} T={T} I={I} H={H} heads={NH}, training step")
        print("| variant | ms | / default |\n|---|---|---|")
        for k, v in ms.items():
            print(f"| {k} | {v:.1f} | {v / base:.2f}x |")
        jvps = {k: jax.jit(_jvp(loss_fn(VARIANTS[k], cell))) for k in JVP_ROWS}
        got = [jax.tree.leaves(f(p, xs)) for f in jvps.values()]
        err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(*got, strict=True))
        if err > 1e-4:
            raise SystemExit(f"jvp: the rule differs from the default by {err:.1e}")
        ms = median_ms(jvps, (p, xs), rounds, reps)
        print("| forward mode (jvp) | ms | / default |\n|---|---|---|")
        for k, v in ms.items():
            print(f"| {k} | {v:.1f} | {v / ms[JVP_ROWS[0]]:.2f}x |")
        loss = loss_fn(run_scan, cell)
        parts = {
            "forward": jax.jit(loss),
            "grad w.r.t. inputs only": jax.jit(jax.grad(loss, 1)),
            "grad w.r.t. params and inputs": train["scan (default)"],
        }
        for f in parts.values():
            jax.block_until_ready(f(p, xs))
        ms = median_ms(parts, (p, xs), rounds, reps)
        print("| default, split | ms |\n|---|---|")
        for k, v in ms.items():
            print(f"| {k} | {v:.1f} |")


if __name__ == "__main__":
    main()
