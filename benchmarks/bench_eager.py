"""Eager derivatives: ``jax.grad`` of a recurrent layer called in a Python loop, without ``jit``.

Usage (2 layers, bidirectional)::

    pip install -e ".[bench]"
    python benchmarks/bench_eager.py            # B, T, I, H = 8, 50, 16, 64
    python benchmarks/bench_eager.py --quick    # tiny shapes, lstm_jax only (seconds)

A notebook or a debugging session often calls ``jax.grad(loss)(params)`` (or ``nnx.grad``)
outside ``jit``. Each round times, for every entry and in an order shuffled each round, one eager
gradient call and one call of the same gradient jitted; the table shows medians over rounds
(milliseconds), ``eager / jitted`` and the memory mappings the process gained per eager call
(Linux; compiled code that stays mapped: the process fails once it reaches
``/proc/sys/vm/max_map_count``). The first call of each is made before timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from rounds import round_orders  # noqa: E402

import lstm_jax as lj  # noqa: E402


def n_maps() -> int | None:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def lstm_jax_entry(x, H, backward):
    rnn = lj.LSTM(H, num_layers=2, bidirectional=True, backward=backward)
    params = rnn.init(jax.random.key(0), x.shape[-1])
    grad = jax.grad(lambda p: jnp.mean(rnn.apply(p, x)[1] ** 2))
    jitted = jax.jit(grad)
    return (lambda: grad(params)), (lambda: jitted(params))


def nnx_entry(x, H, module):
    from flax import nnx

    if module == "lstm_jax.nnx":
        from lstm_jax import nnx as m
    else:
        m = nnx

    rngs = nnx.Rngs(0)
    I = x.shape[-1]

    def rnn(size_in):
        return m.RNN(m.OptimizedLSTMCell(size_in, H, rngs=rngs))

    model = m.Bidirectional(rnn(I), rnn(I))
    model2 = m.Bidirectional(rnn(2 * H), rnn(2 * H))

    def loss(pair):
        return jnp.mean(pair[1](pair[0](x)) ** 2)

    pair = nnx.List([model, model2]) if hasattr(nnx, "List") else (model, model2)
    jitted = nnx.jit(nnx.grad(loss))
    return (lambda: nnx.grad(loss)(pair)), (lambda: jitted(pair))


def linen_entry(x, H):
    import flax.linen as nn

    class Stack(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(2):
                x = nn.Bidirectional(
                    nn.RNN(nn.OptimizedLSTMCell(H)), nn.RNN(nn.OptimizedLSTMCell(H))
                )(x)
            return x

    model = Stack()
    variables = model.init(jax.random.key(0), x)
    grad = jax.grad(lambda v: jnp.mean(model.apply(v, x) ** 2))
    jitted = jax.jit(grad)
    return (lambda: grad(variables)), (lambda: jitted(variables))


def entries(x, H, quick):
    out = {
        "lstm_jax LSTM (default)": lambda: lstm_jax_entry(x, H, "fast"),
        "lstm_jax LSTM (autodiff)": lambda: lstm_jax_entry(x, H, "autodiff"),
        "lstm_jax.nnx RNN(OptimizedLSTMCell)": lambda: nnx_entry(x, H, "lstm_jax.nnx"),
    }
    if not quick:
        out["flax nnx RNN(OptimizedLSTMCell)"] = lambda: nnx_entry(x, H, "flax.nnx")
        out["flax linen RNN(OptimizedLSTMCell)"] = lambda: linen_entry(x, H)
    return out


def timed(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return 1e3 * (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, lstm_jax only, 2 rounds")
    args = ap.parse_args(argv)
    B, T, I, H = (2, 5, 3, 4) if args.quick else (8, 50, 16, 64)
    rounds = 2 if args.quick else args.rounds
    import flax

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}; device: {jax.devices()[0].device_kind}; "
        f"cpu: {platform.processor() or platform.machine()}; python {platform.python_version()}, "
        f"jax {jax.__version__}, flax {flax.__version__}"
    )
    print(f"# B, T, I, H = {B}, {T}, {I}, {H}; 2 layers, bidirectional; {rounds} rounds")
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    calls = {name: make() for name, make in entries(x, H, args.quick).items()}
    for eager, jitted in calls.values():  # first calls: traces and compiles
        timed(eager), timed(jitted)
    times = {name: ([], []) for name in calls}
    maps = {name: 0 for name in calls}
    names = list(calls)
    for order in round_orders(names, rounds):
        for name in order:
            eager, jitted = calls[name]
            before = n_maps()
            times[name][0].append(timed(eager))
            after = n_maps()
            if before is not None and after is not None:
                maps[name] += after - before
            times[name][1].append(timed(jitted))
    print("| entry | eager grad (ms) | jitted grad (ms) | eager / jitted | maps per eager call |")
    print("|---|---|---|---|---|")
    for name in names:
        e, j = (statistics.median(t) for t in times[name])
        mapped = "-" if n_maps() is None else f"{maps[name] / rounds:.0f}"
        print(f"| {name} | {e:.1f} | {j:.1f} | {e / j:.1f}x | {mapped} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
