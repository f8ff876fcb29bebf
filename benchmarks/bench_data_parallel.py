"""Data parallelism over host CPU devices: the default LSTM's training step, one device against
``--devices`` of them, interleaved in one process.

Usage::

    pip install -e ".[bench]"
    python benchmarks/bench_data_parallel.py                 # 2 host devices, shapes S, M, L
    python benchmarks/bench_data_parallel.py --devices 4 --rounds 11
    python benchmarks/bench_data_parallel.py --quick         # a smoke run (seconds)

XLA splits the host into devices only when ``--xla_force_host_platform_device_count`` is in
``XLA_FLAGS`` before JAX starts, so this script sets it itself. Both steps run in the same
process on the same cores: the plain one is ``jax.jit(jax.grad(loss))`` on device 0 with the
whole batch; the parallel one wraps the same loss in
:func:`lstm_jax.sharding.data_parallel_loss` (each device differentiates its shard of the batch,
one gradient ``pmean`` per step), with params replicated and the batch split over ``data``.
The gradients are checked equal before timing. Times are milliseconds, medians of ``--rounds``
rounds of ``--reps`` calls; ratio = one device / several (above 1: data parallelism is faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2, help="host devices to split the CPU into")
    ap.add_argument("--shapes", default="S,M,L", help="comma-separated subset of S, M, L")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3, help="calls per timing")
    ap.add_argument("--quick", action="store_true", help="a tiny shape, 3 rounds: a smoke test")
    return ap.parse_args(argv)


SHAPES = {  # name: (B, T, I, H), as in bench_lstm.py
    "S": (32, 100, 1, 50),
    "M": (64, 100, 128, 256),
    "L": (32, 64, 256, 512),
    "tiny": (4, 5, 3, 8),  # --quick
}


def time_shape(shape, mesh, rounds, reps):
    """``(one device ms, data parallel ms, largest relative gradient difference)``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import lstm_jax as lj
    from lstm_jax.sharding import batch_sharding, data_parallel_loss, replicated

    B, T, I, H = shape
    layer = lj.LSTM(H)
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))

    def loss(p, batch):
        return jnp.mean(layer.apply(p, batch)[1] ** 2)

    dev0 = jax.devices()[0]
    one = jax.jit(jax.grad(loss))
    par = jax.jit(jax.grad(data_parallel_loss(loss, mesh)))
    args_one = (jax.device_put(params, dev0), jax.device_put(x, dev0))
    args_par = (jax.device_put(params, replicated(mesh)), jax.device_put(x, batch_sharding(mesh)))

    g1, gn = one(*args_one), par(*args_par)
    diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / (np.max(np.abs(a)) + 1e-30))
        for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(gn), strict=True)
    )
    if diff > 1e-4:
        raise SystemExit(f"{shape}: gradients differ (largest relative difference {diff:.1e})")

    calls = [("one", one, args_one), ("par", par, args_par)]
    times = {"one": [], "par": []}
    for r in range(rounds):
        for key, fn, a in calls[r % 2 :] + calls[: r % 2]:
            t0 = time.perf_counter()
            for _ in range(reps):
                jax.block_until_ready(fn(*a))
            times[key].append((time.perf_counter() - t0) / reps * 1e3)
    return statistics.median(times["one"]), statistics.median(times["par"]), diff


def main(argv=None):
    args = _args(argv)
    if args.devices < 1:
        raise SystemExit(f"--devices must be at least 1; got {args.devices}")
    flag = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax

    import lstm_jax as lj
    from lstm_jax.sharding import make_mesh

    names = ["tiny"] if args.quick else [s for s in args.shapes.split(",") if s]
    rounds, reps = (3, 1) if args.quick else (args.rounds, args.reps)
    mesh = make_mesh(data=args.devices)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores split into {jax.device_count()} devices; load average "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; python {platform.python_version()}, "
        f"jax {jax.__version__}, lstm_jax {lj.__version__}; XLA_FLAGS={os.environ['XLA_FLAGS']!r}"
    )
    print(f"default lj.LSTM(H) training step; {rounds} rounds of {reps} calls, medians")
    print("| shape (B, T, I, H) | one device (ms) | data parallel (ms) | ratio | grad rel. diff |")
    print("|---|---|---|---|---|")
    for name in names:
        shape = SHAPES[name]
        if shape[0] % args.devices:
            print(f"| {name} {shape} | batch {shape[0]} does not divide by {args.devices} | | | |")
            continue
        t_one, t_par, diff = time_shape(shape, mesh, rounds, reps)
        print(f"| {name} {shape} | {t_one:.1f} | {t_par:.1f} | {t_one / t_par:.2f}x | {diff:.1e} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
