"""onnxruntime (CPU) inference of an exported model against the jitted JAX model, side by side.

Usage::

    pip install -e ".[export]"
    python benchmarks/bench_export.py            # the main job's model and the M shape
    python benchmarks/bench_export.py --quick    # tiny shapes, a smoke run (seconds)

Models: "main" is the ``lstm-jax train`` default, the Keras example's ``LSTM(50)`` over windows
of 100 steps plus ``Dense(1)`` read from the last step (one feature, batch 32); "M" is one
``LSTM(256)`` layer over ``(B, T, I) = (64, 100, 128)``, every step's output. Each round times
JAX and onnxruntime once each, in an order that alternates, so load on a shared machine hits
both alike; the table shows the median over rounds (milliseconds) and ``onnxruntime / JAX``
(above 1: JAX is faster). Both outputs are compared first.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import lstm_jax as lj  # noqa: E402
from lstm_jax.export import RecurrentModel, to_onnx  # noqa: E402

SHAPES = {  # name: (B, T, I, H, head)
    "main": (32, 100, 1, 50, True),
    "M": (64, 100, 128, 256, False),
}
QUICK = {"main": (4, 10, 1, 8, True), "M": (4, 10, 8, 16, False)}


def build(B, T, I, H, head):
    rnn = lj.LSTM(H)
    model = RecurrentModel(rnn, lj.Dense(1), pooling="last") if head else rnn
    params = model.init(jax.random.key(0), I)
    xs = np.random.default_rng(0).normal(size=(B, T, I)).astype(np.float32)
    return model, params, xs


def timed(fn, rounds_out: list[float]) -> None:
    t0 = time.perf_counter()
    fn()
    rounds_out.append(1e3 * (time.perf_counter() - t0))


def bench(name, shape, rounds, threads):
    import onnxruntime as ort

    model, params, xs = build(*shape)
    jitted = jax.jit(lambda p, x: model.apply(p, x)[1])
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    proto = to_onnx(model, params)
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x_dev = jnp.asarray(xs)
    want = np.asarray(jitted(params, x_dev))
    got = sess.run(["y"], {"x": xs})[0]
    diff = float(np.max(np.abs(got - want)))

    def run_jax():
        jitted(params, x_dev).block_until_ready()

    def run_ort():
        sess.run(["y"], {"x": xs})

    for _ in range(3):  # warm up both
        run_jax()
        run_ort()
    t_jax, t_ort = [], []
    for r in range(rounds):
        pair = [(run_jax, t_jax), (run_ort, t_ort)]
        for fn, out in pair if r % 2 == 0 else pair[::-1]:
            timed(fn, out)
    j, o = statistics.median(t_jax), statistics.median(t_ort)
    B, T, I, H, _ = shape
    return f"| {name} | {B}, {T}, {I}, {H} | {j:.2f} | {o:.2f} | {o / j:.2f}x | {diff:.1e} |"


def main(argv=None) -> int:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, few rounds")
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument(
        "--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)"
    )
    args = ap.parse_args(argv)
    shapes, rounds = (QUICK, 5) if args.quick else (SHAPES, args.rounds)
    cpu = platform.processor() or platform.machine()
    print(
        f"jax {jax.__version__}, onnxruntime {ort.__version__}, {cpu}, {os.cpu_count()} CPUs, "
        f"{rounds} rounds, medians"
    )
    print("| model | B, T, I, H | JAX jit (ms) | onnxruntime (ms) | onnxruntime / JAX | max diff |")
    print("|---|---|---|---|---|---|")
    for name, shape in shapes.items():
        print(bench(name, shape, rounds, args.threads), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
