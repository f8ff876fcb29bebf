"""Times the modern LSTM family's forms against the classic LSTM fast path, in one process.

Usage::

    python benchmarks/bench_xlstm.py                     # B=8, H=256, T in 256 1024 4096 16384
    python benchmarks/bench_xlstm.py --T 256 1024        # fewer lengths
    python benchmarks/bench_xlstm.py --quick             # a tiny smoke run (seconds)

Rows: ``LSTMCell`` through ``lstm_scan`` (the hand-derived backward pass, the library's fast
path), ``sLSTMCell`` through ``scan``, ``mLSTMCell`` recurrent (``scan``), parallel
(``parallel_scan(chunk_size=T)``) and chunkwise (``chunk_size=64``), and ``minLSTMCell``
sequential (``scan``) and parallel (``parallel_scan``). "train" is ``grad`` of ``mean(ys ** 2)``
with respect to params and inputs, "fwd" the outputs alone, "jvp" the same loss's forward-mode
derivative along one direction in (params, inputs); milliseconds, median over rounds that
interleave the rows. "temp MiB" is XLA's compiled temporary memory of the training step
(its peak working set beyond inputs and outputs). A form whose estimated ``(B, NH, T, T)``
matrices exceed ``--max-gib`` is not run and says so. Ratios are time / the LSTM's time;
"jvp / train" is a form's own forward-mode time over its training time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from rounds import round_orders

import lstm_jax as lj

CHUNK = 64
MODES = ("fwd", "train", "jvp")


def forms(H: int, heads: int):
    """``name -> (cell, run(params, xs) -> ys, quadratic)``."""
    lstm, slstm = lj.LSTMCell(H), lj.sLSTMCell(H, num_heads=heads)
    mlstm, minlstm = lj.mLSTMCell(H, num_heads=heads), lj.minLSTMCell(H)
    return {
        "LSTM (lstm_scan, fast path)": (lstm, lambda p, x: lj.lstm_scan(lstm, p, x)[1], False),
        "sLSTM (scan)": (slstm, lambda p, x: lj.scan(slstm, p, x)[1], False),
        "mLSTM recurrent (scan)": (mlstm, lambda p, x: lj.scan(mlstm, p, x)[1], False),
        "mLSTM parallel": (
            mlstm,
            lambda p, x: lj.parallel_scan(mlstm, p, x, chunk_size=x.shape[-2])[1],
            True,
        ),
        f"mLSTM chunkwise (L={CHUNK})": (
            mlstm,
            lambda p, x: lj.parallel_scan(mlstm, p, x, chunk_size=CHUNK)[1],
            False,
        ),
        "minLSTM sequential (scan)": (minlstm, lambda p, x: lj.scan(minlstm, p, x)[1], False),
        "minLSTM parallel (log scan)": (
            minlstm,
            lambda p, x: lj.parallel_scan(minlstm, p, x)[1],
            False,
        ),
    }


def compiled(run, params, xs, max_temp_gib):
    """``({"fwd", "train", "jvp"}: compiled (params, xs) -> ..., the step's temp MiB)``; None
    and the MiB when the training step needs more than ``max_temp_gib`` of temporary memory (it
    is then not run)."""
    fwd = jax.jit(run).lower(params, xs).compile()

    def loss(p, x):
        return jnp.mean(run(p, x) ** 2)

    train = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, xs).compile()
    mem = train.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", 0) / 2**20 if mem is not None else float("nan")
    if temp > 1024 * max_temp_gib:
        return None, temp
    leaves, tree = jax.tree.flatten((params, xs))
    keys = jax.random.split(jax.random.key(7), len(leaves))
    direction = tree.unflatten(
        [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    )
    tangent = jax.jit(lambda p, x: jax.jvp(loss, (p, x), direction)).lower(params, xs).compile()
    fns = {"fwd": fwd, "train": train, "jvp": tangent}
    for fn in fns.values():
        jax.block_until_ready(fn(params, xs))
    return fns, temp


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return 1e3 * (time.perf_counter() - t0)


def bench_T(T: int, args) -> list[tuple[str, str]]:
    B, H, I = args.B, args.H, args.H
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    rows, live = {}, {}
    for name, (cell, run, quadratic) in forms(H, args.heads).items():
        gib = 4 * B * args.heads * T * T * 4 / 2**30  # ~4 float32 (T, T) buffers per head
        if quadratic and gib > args.max_gib:
            rows[name] = f"not run: ~{gib:.0f} GiB of (T, T) matrices | - | -"
            continue
        params = cell.init(jax.random.key(0), I)
        fns, temp = compiled(run, params, xs, args.max_temp_gib)
        if fns is None:
            rows[name] = f"not run: its training step needs {temp / 1024:.0f} GiB | - | {temp:.0f}"
            continue
        live[name] = (fns, params, temp, {m: [] for m in MODES})
    names = list(live)
    for order in round_orders(names, args.rounds):
        for name in order:
            fns, params, _, times = live[name]
            for m in MODES:
                times[m].append(timed(fns[m], params, xs))
    base = names[0]
    med = {n: {m: statistics.median(live[n][3][m]) for m in MODES} for n in names}
    for n in names:
        ms = " / ".join(f"{med[n][m]:.1f}" for m in MODES)
        ratios = " / ".join(f"{med[n][m] / med[base][m]:.2f}x" for m in MODES)
        own = med[n]["jvp"] / med[n]["train"]
        rows[n] = f"{ms} ({ratios}) | {own:.2f}x | {live[n][2]:.0f}"
    return list(rows.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-gib", type=float, default=2.0)
    ap.add_argument(
        "--max-temp-gib", type=float, default=12.0, help="skip steps needing more temp memory"
    )
    ap.add_argument("--quick", action="store_true", help="B=2, H=16, T=32 and 64, one round")
    args = ap.parse_args()
    if args.quick:  # keeps an explicit --T
        T = args.T if args.T != ap.get_default("T") else [32, 64]
        args.T, args.B, args.H, args.rounds = T, 2, 16, 1
    dev = jax.devices()[0]
    print(f"jax {jax.__version__}, {dev.platform} ({dev.device_kind}), {platform.processor()}")
    print(f"B={args.B}, H=I={args.H}, heads={args.heads}, rounds={args.rounds}\n")
    print("| T | form | fwd / train / jvp ms (ratio to LSTM) | jvp / train | train temp MiB |")
    print("|---|---|---|---|---|")
    for T in args.T:
        for name, cells in bench_T(T, args):
            print(f"| {T} | {name} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
