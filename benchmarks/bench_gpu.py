"""GPU benchmark: lstm_jax against cuDNN (PyTorch's and JAX's) and the JAX peers, in one process.

Usage (on a machine with a CUDA GPU, jax with CUDA, and optionally torch with CUDA)::

    python benchmarks/bench_gpu.py                 # correctness checks, then the timing table
    python benchmarks/bench_gpu.py --sweep         # lstm_jax at unroll 1, 8, 16 against cuDNN
    python benchmarks/bench_gpu.py --quick --cpu   # a smoke run of the script without a GPU

First it checks, on this GPU, that lstm_jax's default path (the hand-derived BPTT at the
backend's default unroll) gives the outputs, final carry and gradients of a plain one-step
``jax.lax.scan``, and that ``jax.experimental.rnn.lstm`` (cuDNN) agrees with lstm_jax for
batch-major and time-major callers. Up to batch 8 it also times the recurrence evaluated in
parallel over time (``parallel_in_time.py``, an experiment), after checking how many
iterations it needs on the benchmark's weights and how far it is from the sequential result.
Then it times the forward pass and the training step
(``grad`` of ``mean(ys ** 2)`` with respect to params and inputs) of every entry, interleaved in
an order shuffled each round, medians over rounds, at each library's default matmul precision.
Ratios are ``entry / first entry``: above 1, the first entry (lstm_jax) is faster.
``--json PATH`` also writes every number.
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
import parallel_in_time  # noqa: E402
import peers  # noqa: E402
from rounds import round_orders  # noqa: E402

import lstm_jax as lj  # noqa: E402
from lstm_jax.sequence import fast_lstm  # noqa: E402

SHAPES = {  # name: (B, T, I, H)
    "M": (64, 100, 128, 256),
    "XL": (128, 200, 512, 1024),
    "B8 T1000": (8, 1000, 64, 256),
    "S": (32, 100, 1, 50),
    "L": (32, 64, 256, 512),
    "B1 T2000": (1, 2000, 32, 128),
}
QUICK = {"S": (8, 20, 3, 16), "B2 T200": (2, 200, 8, 32)}


def ours(x, H, name, **kw):
    rnn = lj.LSTM(H, forget_bias=0.0, **kw)
    params = rnn.init(jax.random.key(0), x.shape[-1])
    return peers._jax_entry(name, lambda p, x: rnn.apply(p, x)[1], params, x)


# batches up to this size also time the recurrence evaluated in parallel over time
PARALLEL_MAX_BATCH = 8


def parallel_entry(x, H, tol=1e-6, max_iters=500):
    """``parallel_in_time.picard_lstm`` on the default cell's weights, with as many iterations
    as it takes (measured here, on these weights and inputs) for no step's ``h`` to move by
    more than ``tol``. Prints that count and the largest difference from the sequential
    rule's output."""
    B, T, I = x.shape
    p = lj.LSTMCell(H, forget_bias=0.0).init(jax.random.key(0), I)
    xs = jnp.swapaxes(x, 0, 1)
    h0 = c0 = jnp.zeros((B, H), x.dtype)
    iters, _ = parallel_in_time.iterations_to_converge(p, xs, h0, c0, tol, max_iters)
    exact = fast_lstm.lstm_core(fast_lstm.Static(), p, xs, h0, c0, None, None)[0]
    got = parallel_in_time.picard_lstm(p, xs, h0, c0, iters)[0]
    err = float(jnp.max(jnp.abs(got - exact)))

    def apply(p, x):
        hs, _ = parallel_in_time.picard_lstm(p, jnp.swapaxes(x, 0, 1), h0, c0, iters)
        return jnp.swapaxes(hs, 0, 1)

    print(f"check parallel in time {tuple(x.shape)}: {iters} iterations, max diff {err:.1e}")
    return peers._jax_entry("parallel in time (Picard)", apply, p, x)


def jax_cudnn(x, H, reference=False):
    """``jax.experimental.rnn.lstm``: cuDNN's fused LSTM (``lstm_ref`` with ``reference``)."""
    from jax.experimental import rnn

    B, T, I = x.shape
    w = rnn.init_lstm_weight(jax.random.key(0), I, H, 1, False)
    lens = jnp.full((B,), T, jnp.int32)

    def apply(w, x):
        h0 = jnp.zeros((1, B, H), x.dtype)
        if reference:
            unpacked = rnn.unpack_lstm_weights(w, I, H, 1, False)
            return rnn.lstm_ref(x, h0, h0, *unpacked, lens, I, H, 1, 0.0, False)[0]
        return rnn.lstm(x, h0, h0, w, lens, I, H, 1, 0.0, False)[0]

    return peers._jax_entry("jax.experimental.rnn (cuDNN)", apply, w, x)


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


def entries_for(shape, quick, sweep, cpu):
    B, T, I, H = shape
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    if sweep:
        out = [ours(x, H, "lstm_jax (autodiff) unroll=1", unroll=1)]
        out += [ours(x, H, f"lstm_jax (autodiff) unroll={u}", unroll=u) for u in (8, 16)]
        out += [ours(x, H, f"lstm_jax (bptt) unroll={u}", backward="bptt", unroll=u)
                for u in (1, 8, 16)]  # fmt: skip
        makers = [("jax cudnn", lambda x, H: jax_cudnn(x, H, cpu)), ("torch", torch_cuda)]
    else:
        out = [
            ours(x, H, "lstm_jax (bptt)", backward="bptt"),
            ours(x, H, "lstm_jax (autodiff)"),
            ours(x, H, "lstm_jax (bptt) unroll=1", backward="bptt", unroll=1),
        ]
        if not quick:
            out.append(ours(x, H, "lstm_jax (autodiff) bf16", dtype=jnp.bfloat16))
        if B <= PARALLEL_MAX_BATCH:
            out.append(parallel_entry(x, H))
        makers = [
            ("jax cudnn", lambda x, H: jax_cudnn(x, H, cpu)),
            ("flax", peers.flax_linen_entry),
            ("equinox", peers.equinox_entry),
            ("torch", torch_cuda),
        ]
    for name, make in makers:
        try:
            out.append(make(x, H))
        except Exception as e:  # a missing or broken peer is reported, not fatal
            print(f"  skipping {name}: {type(e).__name__}: {e}", file=sys.stderr)
    return out


def time_entries(entries, rounds, budget_s=0.05):
    """Medians (ms) per entry and mode over ``rounds`` shuffled rounds (``rounds.py``)."""
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
    for order in round_orders(ok, rounds):
        for e in order:
            for mode in ("fwd", "train"):
                fn, n = getattr(e, mode), reps[(e.name, mode)]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times[(e.name, mode)].append((time.perf_counter() - t0) / n * 1e3)
    return {f"{k[0]}|{k[1]}": statistics.median(v) for k, v in times.items()}


def _max_err(u, v):
    pairs = zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True)
    return max(float(jnp.max(jnp.abs(s - t))) for s, t in pairs)


def _loss_and_grads(rnn, p, x, c0, lens):
    def loss(p, x, c0):
        c, ys = rnn.apply(p, x, c0, lengths=lens)
        extra = sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(c))
        return jnp.sum(ys**2) + extra, (ys, c)

    return jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(p, x, c0)


def check_default_path():
    """The default training path (BPTT, backend unroll) against a one-step autodiff scan."""
    rows = []
    B, T, I, H = (3, 4), 9, 5, 16
    lengths = jnp.array([[9, 3, 0, 1], [2, 9, 6, 4], [9, 9, 1, 5]])
    with jax.default_matmul_precision("highest"):
        for L, bi, tm, lens in ((1, False, False, None), (2, True, False, lengths),
                                (2, False, True, lengths)):  # fmt: skip
            base = lj.LSTM(H, L, bi, time_major=tm, unroll=1)
            fast = lj.LSTM(H, L, bi, time_major=tm, backward="bptt")
            p = base.init(jax.random.key(0), I)
            x = jax.random.normal(jax.random.key(1), (*B, T, I))
            x = jnp.moveaxis(x, -2, 0) if tm else x
            c0 = jax.tree.map(
                lambda a: jax.random.normal(jax.random.key(2), a.shape), base.initial_carry(B)
            )

            (_, (ya, ca)), ga = _loss_and_grads(base, p, x, c0, lens)
            (_, (yb, cb)), gb = _loss_and_grads(fast, p, x, c0, lens)
            errs = (_max_err(ya, yb), _max_err(ca, cb), _max_err(ga, gb))
            name = f"bptt vs scan: L={L} bidir={bi} time_major={tm} lengths={lens is not None}"
            rows.append((name, "ys {:.1e} carry {:.1e} grads {:.1e}".format(*errs)))
    return rows


def check_jax_cudnn():
    """``jax.experimental.rnn.lstm`` against lstm_jax, fed batch-major and time-major inputs.

    The time-major caller transposes before and after the call, as any model that keeps
    ``(T, B, F)`` activations does.
    """
    from jax.experimental import rnn

    B, T, I, H = 12, 9, 5, 16
    w = rnn.init_lstm_weight(jax.random.key(3), I, H, 1, False)
    W_ih, W_hh, b_ih, b_hh = (d[0] for d in rnn.unpack_lstm_weights(w, I, H, 1, False))
    params = lj.LSTMParams(w_x=W_ih.T, w_h=W_hh.T, b=b_ih + b_hh)
    cell = lj.LSTMCell(H)
    lens = jnp.full((B,), T, jnp.int32)
    h0 = jnp.zeros((1, B, H))
    x_bm = jax.random.normal(jax.random.key(4), (B, T, I))
    rows = []
    with jax.default_matmul_precision("highest"):
        want = lj.scan(cell, params, x_bm, unroll=1)[1]
        got = jax.jit(lambda x: rnn.lstm(x, h0, h0, w, lens, I, H, 1, 0.0, False)[0])(x_bm)
        rows.append(
            ("jax.experimental.rnn vs lstm_jax, batch-major", f"ys {_max_err(got, want):.1e}")
        )

        def time_major(x_tm):  # (T, B, I) -> (T, B, H) through the batch-major call
            y = rnn.lstm(jnp.swapaxes(x_tm, 0, 1), h0, h0, w, lens, I, H, 1, 0.0, False)[0]
            return jnp.swapaxes(y, 0, 1)

        got = jnp.swapaxes(jax.jit(time_major)(jnp.swapaxes(x_bm, 0, 1)), 0, 1)
        rows.append(
            ("jax.experimental.rnn vs lstm_jax, time-major", f"ys {_max_err(got, want):.1e}")
        )
    return rows


def compile_times(shape, Ts):
    """Seconds to trace, lower and compile the default training step, per T."""
    B, _, I, H = shape
    out = {}
    for T in Ts:
        x = jax.random.normal(jax.random.key(1), (B, T, I))
        for backward in ("bptt", "autodiff"):
            rnn = lj.LSTM(H, backward=backward)
            p = rnn.init(jax.random.key(0), I)
            g = jax.grad(lambda p, x, rnn=rnn: jnp.mean(rnn.apply(p, x)[1] ** 2), argnums=(0, 1))
            jax.clear_caches()
            t0 = time.perf_counter()
            jax.jit(g).lower(p, x).compile()
            out[f"{backward} T={T}"] = time.perf_counter() - t0
    return out


def versions():
    v = peers.versions()
    try:
        import torch

        v["torch cuda"] = torch.version.cuda
        v["torch cudnn"] = str(torch.backends.cudnn.version())
        v["gpu"] = torch.cuda.get_device_name()
    except Exception as e:  # noqa: BLE001
        v["torch cuda"] = f"unavailable ({type(e).__name__})"
    v["jax devices"] = str(jax.devices())
    v["python"] = platform.python_version()
    return v


def table(results):
    names = list(dict.fromkeys(k.split("|")[0] for r in results.values() for k in r))
    base = names[0]
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
            rf, rt = f / r[f"{base}|fwd"], t / r[f"{base}|train"]
            cells.append(f"{f:.2f} / {t:.2f} ({rf:.2f}x / {rt:.2f}x)")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _dump(report, path):
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, two rounds")
    ap.add_argument("--sweep", action="store_true", help="unroll 1, 8, 16 against cuDNN")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--shapes", default=None, help="comma-separated names (SHAPES or QUICK)")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="run without a GPU (JAX's cuDNN entry runs its plain-JAX reference): checks the "
        "script, times nothing meaningful",
    )
    args = ap.parse_args(argv)
    report = {"versions": versions(), "backend": jax.default_backend()}
    print(json.dumps(report, indent=1), flush=True)
    if jax.default_backend() != "gpu" and not args.cpu:
        print("JAX's default backend is not a GPU; pass --cpu for a smoke run of the script.")
        return 1
    checks = check_default_path()
    if not args.cpu:
        try:
            checks += check_jax_cudnn()
        except Exception as err:  # noqa: BLE001  (still time what runs)
            checks.append(("jax.experimental.rnn check failed", f"{type(err).__name__}: {err}"))
    report["checks"] = checks
    for row in checks:
        print("check", *row, flush=True)
    shapes = QUICK if args.quick else SHAPES
    if args.shapes:
        shapes = {k: (QUICK if args.quick else SHAPES)[k] for k in args.shapes.split(",")}
    rounds = args.rounds or (2 if args.quick else 5)
    results = {}
    for name, shape in shapes.items():
        t0 = time.perf_counter()
        results[name] = time_entries(entries_for(shape, args.quick, args.sweep, args.cpu), rounds)
        print(f"shape {name} {shape} done in {time.perf_counter() - t0:.0f} s", flush=True)
        report["results"] = results
        _dump(report, args.json)
    if not args.quick and not args.sweep:
        report["compile_s"] = compile_times(SHAPES["M"], (100, 1000))
        print("compile", json.dumps(report["compile_s"]), flush=True)
    _dump(report, args.json)
    print("checks (max abs difference, float32 products at highest precision):")
    for row in checks:
        print("  ", *row)
    print(f"\nshapes (B, T, I, H): {json.dumps(shapes)}; rounds={rounds}")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
