"""GPU benchmark: lstm_jax's kernels against cuDNN (PyTorch) and the JAX peers, in one process.

Usage (on a machine with a CUDA GPU and jax[cuda])::

    python benchmarks/bench_gpu.py                 # correctness checks, then the timing table
    python benchmarks/bench_gpu.py --quick         # small shapes, few rounds (a smoke run)
    python benchmarks/bench_gpu.py --quick --reference-kernel   # the smoke run without a GPU

First it checks that every lstm_jax kernel computes the same outputs, final carries and
gradients as ``jax.lax.scan`` on this GPU (float32 products at ``highest`` precision), then it
times forward and training step (``grad`` of ``mean(ys ** 2)`` with respect to params and
inputs) for every entry, interleaved in rotating order, medians over rounds, at the default
matmul precision of each library. Ratios are ``entry / lstm_jax (auto)``: above 1, lstm_jax's
default is faster. ``--json PATH`` also writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import peers  # noqa: E402

import lstm_jax as lj  # noqa: E402
from lstm_jax import _cudnn  # noqa: E402

SHAPES = {  # name: (B, T, I, H)
    "M": (64, 100, 128, 256),
    "XL": (128, 200, 512, 1024),
    "B8 T1000": (8, 1000, 64, 256),
    "S": (32, 100, 1, 50),
    "L": (32, 64, 256, 512),
    "B1 T2000": (1, 2000, 32, 128),
}
QUICK = {"S": (8, 20, 3, 16), "B2 T200": (2, 200, 8, 32)}
OURS = "lstm_jax (auto)"


def ours(x, H, name, **kw):
    rnn = lj.LSTM(H, forget_bias=0.0, **kw)
    params = rnn.init(jax.random.key(0), x.shape[-1])
    return peers._jax_entry(name, lambda p, x: rnn.apply(p, x)[0], params, x)


def torch_cuda(x, H):
    import torch

    torch.manual_seed(0)
    model = torch.nn.LSTM(x.shape[-1], H, batch_first=True).cuda()
    xt = torch.from_numpy(np.array(x)).cuda().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            y = model(xt)[0]
        torch.cuda.synchronize()
        return y

    def train():
        model.zero_grad(set_to_none=True)
        xt.grad = None
        ys, _ = model(xt)
        ys.square().mean().backward()
        torch.cuda.synchronize()
        return xt.grad

    return peers.Entry("torch nn.LSTM (cuDNN)", fwd, train)


def entries_for(shape, quick):
    B, T, I, H = shape
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    out = [
        ours(x, H, OURS),
        ours(x, H, "lstm_jax scan (autodiff)", kernel="scan"),
        ours(x, H, "lstm_jax scan (bptt)", kernel="scan", backward="bptt"),
        ours(x, H, "lstm_jax scan unroll=8", kernel="scan", unroll=8),
    ]
    if not quick:
        out.append(ours(x, H, "lstm_jax scan bf16", kernel="scan", dtype=jnp.bfloat16))
    for name, make in (
        ("flax", peers.flax_linen_entry),
        ("equinox", peers.equinox_entry),
        ("torch", torch_cuda),
    ):
        try:
            out.append(make(x, H))
        except Exception as e:  # a missing or broken peer is reported, not fatal
            print(f"  skipping {name}: {type(e).__name__}: {e}", file=sys.stderr)
    return out


def time_entries(entries, rounds, budget_s=0.05):
    """Medians (ms) per entry and mode over ``rounds`` rotated rounds."""
    reps, times, ok = {}, {}, []
    for e in entries:
        try:
            e.fwd(), e.fwd(), e.train(), e.train()  # compile, warm up
        except Exception as err:  # a peer that fails here is reported and left out
            print(f"  dropping {e.name}: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        ok.append(e)
        for mode in ("fwd", "train"):
            fn = getattr(e, mode)
            t0 = time.perf_counter()
            fn()
            one = time.perf_counter() - t0
            reps[(e.name, mode)] = max(1, min(50, int(budget_s / max(one, 1e-6))))
            times[(e.name, mode)] = []
    entries = ok
    for r in range(rounds):
        order = entries[r % len(entries) :] + entries[: r % len(entries)]
        for e in order:
            for mode in ("fwd", "train"):
                fn, n = getattr(e, mode), reps[(e.name, mode)]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times[(e.name, mode)].append((time.perf_counter() - t0) / n * 1e3)
    return {f"{k[0]}|{k[1]}": statistics.median(v) for k, v in times.items()}


def check_kernels(quick):
    """Max abs difference of outputs, carries and grads: every kernel vs ``jax.lax.scan``."""
    rows = []
    configs = [(1, False, False, False), (2, True, False, True), (2, False, True, True)]
    with jax.default_matmul_precision("highest"):
        for L, bi, tm, use_len in configs:
            B, T, I, H = (3, 4), 9, 5, 16
            x = jax.random.normal(jax.random.key(1), (*B, T, I))
            x = jnp.moveaxis(x, -2, 0) if tm else x
            lengths = jnp.array([[9, 3, 0, 1], [2, 9, 6, 4], [9, 9, 1, 5]]) if use_len else None
            for kernel, backward in (("cudnn", "autodiff"), ("scan", "bptt")):
                base = lj.LSTM(H, L, bi, time_major=tm, kernel="scan")
                fast = lj.LSTM(H, L, bi, time_major=tm, kernel=kernel, backward=backward)
                p = base.init(jax.random.key(0), I)
                c0 = jax.tree.map(
                    lambda a: jax.random.normal(jax.random.key(2), a.shape), base.initial_carry(B)
                )

                def run(rnn, p, x, c0, lengths=lengths):
                    def loss(p, x, c0):
                        ys, c = rnn.apply(p, x, c0, lengths=lengths)
                        extra = sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(c))
                        return jnp.sum(ys**2) + extra, (ys, c)

                    return jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(p, x, c0)

                a, b = run(base, p, x, c0), run(fast, p, x, c0)
                err = max(
                    float(jnp.max(jnp.abs(u - v)))
                    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
                )
                rows.append(
                    (f"L={L} bidir={bi} time_major={tm} lengths={use_len}", kernel, backward, err)
                )
    # vmap over an ensemble of params (the cuDNN call has no batching rule: lax.map)
    rnn = lj.LSTM(16, kernel="cudnn")
    ps = jax.vmap(lambda k: rnn.init(k, 5))(jax.random.split(jax.random.key(0), 3))
    x = jax.random.normal(jax.random.key(1), (4, 9, 5))
    with jax.default_matmul_precision("highest"):
        ys = jax.jit(jax.vmap(lambda p: rnn.apply(p, x)[0]))(ps)
        ref = jnp.stack(
            [
                lj.LSTM(16, kernel="scan").apply(jax.tree.map(lambda a, i=i: a[i], ps), x)[0]
                for i in range(3)
            ]
        )
    rows.append(("vmap over 3 param sets", "cudnn", "-", float(jnp.max(jnp.abs(ys - ref)))))
    return rows


def compile_times(shape, Ts):
    B, _, I, H = shape
    out = {}
    for T in Ts:
        x = jax.random.normal(jax.random.key(1), (B, T, I))
        for kernel in ("auto", "scan"):
            rnn = lj.LSTM(H, kernel=kernel)
            p = rnn.init(jax.random.key(0), I)
            g = jax.grad(lambda p, x, rnn=rnn: jnp.mean(rnn.apply(p, x)[0] ** 2), argnums=(0, 1))
            jax.clear_caches()
            t0 = time.perf_counter()
            jax.jit(g).lower(p, x).compile()
            out[f"{kernel} T={T}"] = time.perf_counter() - t0
    return out


def versions():
    v = peers.versions()
    try:
        import torch

        v["torch cuda"] = torch.version.cuda
        v["torch cudnn"] = str(torch.backends.cudnn.version())
        v["gpu"] = torch.cuda.get_device_name()
    except Exception as e:  # noqa: BLE001
        v["torch"] = f"unavailable ({type(e).__name__})"
    v["jax devices"] = str(jax.devices())
    v["python"] = platform.python_version()
    return v


def table(results):
    names = list(dict.fromkeys(k.split("|")[0] for r in results.values() for k in r))
    lines = [
        "| entry | " + " | ".join(f"{s} fwd / train ms (ratio)" for s in results) + " |",
        "|---" * (len(results) + 1) + "|",
    ]
    for n in names:
        cells = []
        for r in results.values():
            if f"{n}|fwd" not in r:
                cells.append("-")
                continue
            f, t = r[f"{n}|fwd"], r[f"{n}|train"]
            rf, rt = f / r[f"{OURS}|fwd"], t / r[f"{OURS}|train"]
            cells.append(f"{f:.2f} / {t:.2f} ({rf:.2f}x / {rt:.2f}x)")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _dump(report, path):
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--shapes", default=None, help="comma-separated names from SHAPES")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--reference-kernel",
        action="store_true",
        help="stand cuDNN's maths in plain JAX in for the cuDNN call (runs without a GPU; "
        "checks the script, times nothing meaningful)",
    )
    args = ap.parse_args(argv)
    if args.reference_kernel:
        _cudnn.CUDNN = _cudnn.REFERENCE
        _cudnn.available = lambda: True
    report = {"versions": versions(), "cudnn_available": _cudnn.available()}
    print(json.dumps(report, indent=1), flush=True)
    if not report["cudnn_available"]:
        print("cuDNN's LSTM is not available here (no CUDA GPU backend): nothing to time.")
        return 1
    try:
        checks = check_kernels(args.quick)
    except Exception as err:  # still time what runs; the failure is in the report
        import traceback

        traceback.print_exc()
        checks = [("checks failed", type(err).__name__, str(err)[:500], float("nan"))]
    report["checks"] = checks
    for row in checks:
        print("check", *row, flush=True)
    shapes = QUICK if args.quick else SHAPES
    if args.shapes:
        shapes = {k: SHAPES[k] for k in args.shapes.split(",")}
    rounds = args.rounds or (2 if args.quick else 5)
    results = {}
    for name, shape in shapes.items():
        t0 = time.perf_counter()
        results[name] = time_entries(entries_for(shape, args.quick), rounds)
        print(f"shape {name} {shape} done in {time.perf_counter() - t0:.0f} s", flush=True)
        print(json.dumps(results[name]), flush=True)
        report["results"] = results
        _dump(report, args.json)
    if not args.quick:
        report["compile_s"] = compile_times(SHAPES["M"], (100, 1000))
        print("compile", json.dumps(report["compile_s"]), flush=True)
    print("checks (max abs difference to jax.lax.scan, highest precision):")
    for row in checks:
        print("  ", *row)
    _dump(report, args.json)
    print(f"\nshapes (B, T, I, H): {json.dumps(shapes)}; rounds={rounds}")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
