"""Times lstm_jax's LSTM, GRU and simple RNN against every installed peer, in one process.

Usage::

    pip install -e ".[bench]"
    python benchmarks/bench_lstm.py                  # shapes S, M, L; forward, training step and
                                                     # jvp; LSTM, GRU and simple RNN
    python benchmarks/bench_lstm.py --cells lstm     # one cell's tables
    python benchmarks/bench_lstm.py --quick          # a tiny smoke run (seconds)
    python benchmarks/bench_lstm.py --compile        # compile time for several T, compiled memory,
                                                     # and the step loaded from the disk cache
    python benchmarks/bench_lstm.py --long           # T = 100,000 training with rematerialisation
    python benchmarks/bench_lstm.py --tune-malloc    # shapes S, M, L after lj.tune_cpu_malloc()

Each round calls every library once per mode, in an order shuffled afresh each round (seeded),
so load on a shared machine hits them all alike and no library always runs right after the same
one (a cyclic rotation keeps the neighbours fixed, and what one library leaves behind, freed
memory or a cold cache, then always lands on the next); the table shows medians over rounds and
the ratio ``peer / lstm_jax`` (above 1: lstm_jax is faster). "train" is ``grad`` of
``mean(ys ** 2)`` with respect to params and inputs; "fwd" is the outputs alone. Times are
milliseconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import peers  # noqa: E402
from rounds import round_orders  # noqa: E402

import lstm_jax as lj  # noqa: E402

SHAPES = {  # name: (B, T, I, H)
    "S": (32, 100, 1, 50),
    "M": (64, 100, 128, 256),
    "L": (32, 64, 256, 512),
}
CELLS = ("lstm", "gru", "rnn")
OURS = {c: f"lstm_jax {c.upper()} (default)" for c in CELLS}
TORCH = {"lstm": "torch nn.LSTM", "gru": "torch nn.GRU", "rnn": "torch nn.RNN"}
MODES = ("fwd", "train", "jvp")


def build(shape, names, variants, cell="lstm"):
    """The entries timed for one shape: lstm_jax's default layer, its variants, the peers."""
    B, T, I, H = shape
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    entries = [peers.lstm_jax_entry(x, H, "default", name=OURS[cell], cell=cell)]
    if variants:
        entries.append(peers.lstm_jax_entry(x, H, "autodiff", cell=cell))
    table = {"lstm": peers.PEERS, "gru": peers.GRU_PEERS, "rnn": peers.RNN_PEERS}[cell]
    for name in names:
        if name not in table:
            continue
        try:
            entries.append(table[name](x, H))
        except ImportError as e:
            print(f"  skipping {name}: {e}", file=sys.stderr)
    return entries


def _modes(e):
    return [m for m in MODES if getattr(e, m) is not None]


def time_shape(entries, rounds, reps):
    """Medians (ms) of ``reps``-call means over ``rounds`` shuffled rounds, per entry and mode."""
    times = {(e.name, m): [] for e in entries for m in _modes(e)}
    for e in entries:  # compile / warm up
        for m in _modes(e):
            getattr(e, m)()
    for order in round_orders(entries, rounds):
        for e in order:
            for mode in _modes(e):
                fn = getattr(e, mode)
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                times[(e.name, mode)].append((time.perf_counter() - t0) / reps * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def speed_table(results, ours):
    """Markdown: one row per library, fwd / train / jvp ms per shape, train ratio to ``ours``."""
    shapes = list(results)
    head = "| library | " + " | ".join(f"{s} fwd / train / jvp (train ratio)" for s in shapes)
    lines = [head + " |", "|---" * (len(shapes) + 1) + "|"]
    names = list(dict.fromkeys(n for s in shapes for n, _ in results[s]))
    for name in names:
        cells = []
        for s in shapes:
            r = results[s]
            if (name, "fwd") not in r:
                cells.append("-")
                continue
            ms = " / ".join(f"{r[(name, m)]:.1f}" if (name, m) in r else "-" for m in MODES)
            cells.append(f"{ms} ({r[(name, 'train')] / r[(ours, 'train')]:.2f}x)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compile_seconds(fn, args, repeats):
    """Median seconds to trace, lower and compile ``jit(fn)`` from empty caches; the executable."""
    times = []
    for _ in range(repeats):
        jax.clear_caches()
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), compiled


def compile_report(shape, Ts, names, repeats=3):
    """Compile time (s) of the training step for each T, and the compiled step's memory."""
    B, _, I, H = shape
    lines = [
        "| library | "
        + " | ".join(f"compile T={T} (s)" for T in Ts)
        + f" | temp memory at T={Ts[-1]} (MiB) |",
        "|---" * (len(Ts) + 2) + "|",
    ]
    rows = {}
    for T in Ts:
        jax_entries = [e for e in build((B, T, I, H), names, True) if e.jax_train is not None]
        for e in jax_entries:
            dt, compiled = compile_seconds(e.jax_train, e.args, repeats)
            mem = compiled.memory_analysis()
            temp = getattr(mem, "temp_size_in_bytes", float("nan")) / 2**20
            rows.setdefault(e.name, []).append((dt, temp))
    for name, vals in rows.items():
        cells = " | ".join(f"{dt:.2f}" for dt, _ in vals)
        lines.append(f"| {name} | {cells} | {vals[-1][1]:.1f} |")
    return "\n".join(lines)


def disk_cache_report(shape, Ts, repeats=3):
    """The default training step compiled afresh against loaded from the disk cache
    (``lj.enable_compile_cache``, a temporary directory), trace and lowering included, per T."""
    from lstm_jax.compile_cache import cache_settings, restore_cache_settings

    B, _, I, H = shape
    lines = ["| training step | " + " | ".join(f"T={T} (s)" for T in Ts) + " |"]
    lines.append("|---" * (len(Ts) + 1) + "|")
    settings, fresh, loaded = cache_settings(), [], []
    with tempfile.TemporaryDirectory() as where:
        try:
            for T in Ts:
                (e,) = build((B, T, I, H), [], False)
                fresh.append(compile_seconds(e.jax_train, e.args, repeats)[0])
                lj.enable_compile_cache(where)
                compile_seconds(e.jax_train, e.args, 1)  # writes the program
                loaded.append(compile_seconds(e.jax_train, e.args, repeats)[0])
                restore_cache_settings(settings)
        finally:
            restore_cache_settings(settings)
    lines.append("| compiled afresh | " + " | ".join(f"{t:.3f}" for t in fresh) + " |")
    lines.append("| loaded from the disk cache | " + " | ".join(f"{t:.3f}" for t in loaded) + " |")
    return "\n".join(lines)


LONG_CHILD = """
import resource, sys, time, jax, jax.numpy as jnp
import lstm_jax as lj
B, T, I, H, k, backward, run = {B}, {T}, {I}, {H}, {k}, {backward!r}, {run}
cell = lj.LSTMCell(H)
p = cell.init(jax.random.key(0), I)
x = jax.random.normal(jax.random.key(1), (B, T, I))
if backward == "bptt":
    f = lambda p, x: lj.lstm_scan(cell, p, x, checkpoint_every=k)[1]
else:
    f = lambda p, x: lj.scan(cell, p, x)[1]
step = jax.jit(jax.grad(lambda p, x: jnp.mean(f(p, x) ** 2), argnums=(0, 1)))
c = step.lower(p, x).compile()
m = c.memory_analysis()
est = (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**30
secs = float("nan")
if run:
    t0 = time.perf_counter(); jax.block_until_ready(c(p, x)); secs = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"RESULT {{est:.2f}} {{rss:.2f}} {{secs:.1f}}")
"""


def long_report(B, T, I, H, configs):
    """T=100,000 training step: compiled memory estimate, peak RSS and time, per remat choice."""
    lines = [
        f"B={B}, T={T}, I={I}, H={H}",
        "",
        "| backward | checkpoint_every | compiled estimate (GiB) | peak RSS (GiB) | step (s) |",
        "|---|---|---|---|---|",
    ]
    for backward, k, run in configs:
        code = LONG_CHILD.format(B=B, T=T, I=I, H=H, k=k, backward=backward, run=run)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        res = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
        if not res:
            lines.append(f"| {backward} | {k} | failed: {out.stderr.strip()[-200:]} | | |")
            continue
        est, rss, secs = res[0].split()[1:]
        rss = rss if run else "(not run)"
        secs = secs if run else "(not run)"
        lines.append(f"| {backward} | {k} | {est} | {rss} | {secs} |")
    return "\n".join(lines)


def cpu_model(cpuinfo=None):
    """The CPU as the results need it: model name, CPUID family and model (the model name of a
    VM is often just "AMD EPYC", while Zen 3, 4 and 5 differ by family and model) and the widest
    vector instructions, from /proc/cpuinfo's text (Linux); else what ``platform`` knows."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return platform.processor() or platform.machine()
    fields = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor's entry
            fields[key.strip()] = value.strip()
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    flags = set(fields.get("flags", "").split())
    isa = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), None)
    return f"{name}, {isa.replace('avx512f', 'avx512')}" if isa else name


def memory_settings():
    """glibc's version and transparent huge pages' mode: both change how much a step pays for
    faulting in its fresh temporaries (benchmarks/RESULTS.md, "page faults")."""
    lib, version = platform.libc_ver()
    out = f"{lib} {version}" if lib else "libc ?"
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read().split("[", 1)[1].split("]", 1)[0]
        out += f", transparent huge pages: {mode}"
    except (OSError, IndexError):
        pass
    return out


def header(malloc="glibc defaults"):
    v = peers.versions()
    dev = jax.devices()[0]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}; device: {dev.platform} ({dev.device_kind}), "
        f"{os.cpu_count()} CPU cores, {cpu_model()}; load average {load}; "
        f"python {platform.python_version()}; malloc: {malloc} ({memory_settings()})\n"
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + f"\nXLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )


def target_table(results, cell="lstm"):
    """Markdown: per shape, torch / ours fwd and train, (fastest JAX peer) / ours train, and
    ours jvp / ours train (forward mode against reverse mode)."""
    ours, torch = OURS[cell], TORCH[cell]
    lines = [
        "| shape | torch / ours fwd | torch / ours train | fastest JAX peer, train | "
        "that peer / ours train | ours jvp / ours train |",
        "|---|---|---|---|---|---|",
    ]

    def ratio(a, b):  # "-" where a peer was not timed (not installed, or left out by --peers)
        return "-" if a is None else f"{a / b:.2f}x"

    for s, r in results.items():
        o = {m: r[(ours, m)] for m in MODES}
        t = {m: r.get((torch, m)) for m in ("fwd", "train")}
        jax_peers = [n for n, m in r if m == "train" and n not in (ours, torch)]
        jax_peers = [n for n in jax_peers if not n.startswith("lstm_jax")]
        best = min(jax_peers, key=lambda n: r[(n, "train")], default=None)
        best_train = None if best is None else r[(best, "train")]
        lines.append(
            f"| {s} | {ratio(t['fwd'], o['fwd'])} | {ratio(t['train'], o['train'])} "
            f"| {best or '-'} | {ratio(best_train, o['train'])} "
            f"| {ratio(o['jvp'], o['train'])} |"
        )
    return "\n".join(lines)


def bf16_report(shapes, rounds):
    """bfloat16 compute (``LSTMCell(dtype=bfloat16)``, float32 params) against float32."""
    import jax.numpy as jnp

    lines = [
        "| shape (B, T, I, H) | f32 fwd / train (ms) | bf16 fwd / train (ms) | speed-up fwd / "
        "train | max abs error ys | rel. error grad w_h |",
        "|---|---|---|---|---|---|",
    ]
    for B, T, I, H in shapes:
        x = jax.random.normal(jax.random.key(1), (B, T, I))
        params = lj.LSTMCell(H, forget_bias=0.0).init(jax.random.key(0), I)
        entries, outs = [], {}
        for name, dt in (("f32", None), ("bf16", jnp.bfloat16)):
            cell = lj.LSTMCell(H, forget_bias=0.0, dtype=dt)
            e = peers._jax_entry(name, lambda p, x, c=cell: lj.scan(c, p, x)[1], params, x)
            outs[name] = (e.fwd(), e.train())
            entries.append(e)
        t = time_shape(entries, rounds, 1)
        y32, (g32, _) = outs["f32"]
        y16, (g16, _) = outs["bf16"]
        err_y = float(jnp.max(jnp.abs(y16.astype(jnp.float32) - y32)))
        err_g = float(jnp.max(jnp.abs(g16.w_h - g32.w_h)) / jnp.max(jnp.abs(g32.w_h)))
        f_f, f_t, b_f, b_t = (t[(n, m)] for n in ("f32", "bf16") for m in ("fwd", "train"))
        lines.append(
            f"| {(B, T, I, H)} | {f_f:.1f} / {f_t:.1f} | {b_f:.1f} / {b_t:.1f} "
            f"| {f_f / b_f:.2f}x / {f_t / b_t:.2f}x | {err_y:.1e} | {err_g:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shape, one round: a smoke test")
    ap.add_argument("--shapes", default="S,M,L", help="comma-separated subset of S, M, L")
    ap.add_argument("--peers", default=",".join(peers.PEERS), help="comma-separated peers")
    ap.add_argument(
        "--cells", default=",".join(CELLS), help="comma-separated subset of lstm, gru, rnn"
    )
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=1, help="calls per timing")
    ap.add_argument("--compile", action="store_true", help="compile time and memory report")
    ap.add_argument("--long", action="store_true", help="T=100,000 remat report")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 compute against float32")
    ap.add_argument(
        "--tune-malloc",
        action="store_true",
        help="call lj.tune_cpu_malloc() first (glibc keeps freed blocks; every library gains)",
    )
    args = ap.parse_args(argv)
    malloc = "glibc defaults"
    if args.tune_malloc:  # before the first computation (header() starts JAX)
        malloc = f"lj.tune_cpu_malloc() {lj.tune_cpu_malloc()}"
    if os.environ.get("GLIBC_TUNABLES"):
        malloc += f", GLIBC_TUNABLES={os.environ['GLIBC_TUNABLES']}"
    names = [n for n in args.peers.split(",") if n]
    cells = [c for c in args.cells.split(",") if c]
    known = {*peers.PEERS, *peers.GRU_PEERS, *peers.RNN_PEERS}
    if bad := [n for n in names if n not in known]:
        ap.error(f"--peers: unknown {', '.join(bad)}; known: {', '.join(sorted(known))}")
    if bad := [c for c in cells if c not in CELLS]:
        ap.error(f"--cells: unknown {', '.join(bad)}; known: {', '.join(CELLS)}")
    print(header(malloc))
    if args.quick:
        res = {}
        for cell in cells:
            res[cell] = {"tiny": time_shape(build((2, 5, 3, 4), names, True, cell), 1, 1)}
            print(speed_table(res[cell], OURS[cell]))
            print(target_table(res[cell], cell))
        print(compile_report((2, 5, 3, 4), (5, 10), [], repeats=1))
        print(disk_cache_report((2, 5, 3, 4), (5,), repeats=1))
        print(long_report(2, 50, 3, 4, [("bptt", 10, True)]))
        print(bf16_report([(2, 5, 3, 4)], 1))
        return res
    results = {}
    for cell in cells:
        results[cell] = {}
        for s in filter(None, args.shapes.split(",")):  # --shapes "" skips the speed table
            print(f"timing {cell} {s} {SHAPES[s]} ...", file=sys.stderr, flush=True)
            entries = build(SHAPES[s], names, True, cell)
            results[cell][s] = time_shape(entries, args.rounds, args.reps)
            print(speed_table({s: results[cell][s]}, OURS[cell]), file=sys.stderr, flush=True)
        if results[cell]:
            ours = OURS[cell]
            print(f"\n## {cell.upper()} speed (ms, median; ratio = train time / {ours})\n")
            print(speed_table(results[cell], ours))
            print(f"\n## {cell.upper()} targets (ratio = other / ours; above 1: lstm_jax faster)\n")
            print(target_table(results[cell], cell))
    if args.bf16:
        print("\n## bfloat16 compute, lstm_jax.scan (autodiff), float32 params\n")
        print(bf16_report([SHAPES["M"], SHAPES["L"]], args.rounds))
    if args.compile:
        print("\n## Training-step compile time and compiled temp memory, B=64, I=128, H=256\n")
        print(compile_report((64, None, 128, 256), (10, 100, 1000), names))
        print("\n## The default training step from lj.enable_compile_cache's directory\n")
        print(disk_cache_report((64, None, 128, 256), (10, 100, 1000)))
    if args.long:
        print("\n## Long sequence, training step\n")
        configs = [
            ("autodiff", None, False),
            ("bptt", None, False),
            ("bptt", 100, True),
            ("bptt", 316, True),
            ("bptt", 1000, True),
        ]
        print(long_report(16, 100_000, 32, 128, configs))
        print("\nThe cost of rematerialisation, at a length every variant can store:\n")
        configs = [("autodiff", None, True), ("bptt", None, True), ("bptt", 100, True)]
        print(long_report(16, 10_000, 32, 128, configs))
    return results


if __name__ == "__main__":
    main()
