"""A smoke run of the benchmark script, so that it keeps working as the library changes."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_lstm.py")
N_PEERS = 6  # len(benchmarks/peers.py's PEERS): flax, nnx, equinox, haiku, keras, torch
N_GRU_PEERS = 3  # len(GRU_PEERS): flax, keras, torch
N_RNN_PEERS = 4  # len(RNN_PEERS): flax, haiku, keras, torch


@pytest.mark.slow
def test_quick_benchmark_runs_and_prints_every_table():
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run(
        [sys.executable, SCRIPT, "--quick"], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    # lstm_jax's default layer is the reference row (fwd / train / jvp ms), so its ratio is 1
    for cell in ("LSTM", "GRU", "RNN"):
        assert re.search(
            rf"\| lstm_jax {cell} \(default\) \| [\d.]+ / [\d.]+ / [\d.]+ \(1\.00x\) \|", text
        )
        assert re.search(
            rf"\| lstm_jax {cell} \(autodiff\) \| [\d.]+ / [\d.]+ / [\d.]+ \([\d.]+x\) \|", text
        )
    skipped = out.stderr.count("skipping ")  # a peer whose package is missing
    speed_rows = re.findall(r"^\| .* \| [\d.]+ / [\d.]+ / (?:[\d.]+|-) \([\d.]+x\) \|$", text, re.M)
    # both lstm_jax rows per cell and every installed peer (torch has no jvp column)
    assert len(speed_rows) == 6 + N_PEERS + N_GRU_PEERS + N_RNN_PEERS - skipped
    assert text.count("| tiny | ") == 3  # the targets tables: LSTM, GRU, simple RNN
    compile_row = re.search(
        r"\| lstm_jax LSTM \(default\) \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \|", text
    )
    assert compile_row and all(float(t) > 0 for t in compile_row.groups())
    fresh = re.search(r"^\| compiled afresh \| ([\d.]+) \|$", text, re.M)
    loaded = re.search(r"^\| loaded from the disk cache \| ([\d.]+) \|$", text, re.M)
    assert fresh and loaded and float(loaded.group(1)) > 0
    long_row = re.search(r"\| bptt \| 10 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", text)
    assert long_row and float(long_row.group(2)) > 0  # a peak RSS was measured
    assert re.search(r"\| \(2, 5, 3, 4\) \| .* \| [\d.]+x / [\d.]+x \|", text)  # bf16 row


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--cells", "lstm,lsmt"], r"--cells: unknown lsmt; known: lstm, gru, rnn"),
        (["--peers", "torch,torh"], r"--peers: unknown torh; known: equinox, flax"),
    ],
)
def test_benchmark_names_an_unknown_cell_or_peer(argv, match):
    """A misspelt cell or peer is an error that lists the known ones, not a silently shorter
    table."""
    out = subprocess.run(
        [sys.executable, SCRIPT, *argv], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and re.search(match, out.stderr), out.stderr[-2000:]


def test_targets_table_marks_peers_that_were_not_timed():
    """With only some peers timed (``--peers torch``, or a package missing), the targets table
    shows "-" for what is missing instead of ``None`` and ``nan``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_lstm", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    times = zip(bench.MODES, (2.0, 8.0, 4.0), strict=True)  # fwd, train, jvp
    ours = {("lstm_jax GRU (default)", m): t for m, t in times}
    with_torch = {**ours, ("torch nn.GRU", "fwd"): 3.0, ("torch nn.GRU", "train"): 4.0}
    table = bench.target_table({"M": with_torch, "L": ours}, "gru")
    assert "| M | 1.50x | 0.50x | - | - | 0.50x |" in table
    assert "| L | - | - | - | - | 0.50x |" in table
    assert "None" not in table and "nan" not in table
    with_peer = {**ours, ("flax linen RNN(GRUCell)", "train"): 12.0}
    table = bench.target_table({"S": with_peer}, "gru")
    assert "| S | - | - | flax linen RNN(GRUCell) | 1.50x | 0.50x |" in table


def test_header_names_the_cpu_generation_and_its_vector_width():
    """A VM's model name alone ("AMD EPYC") does not tell Zen 3 from Zen 5; the header adds
    CPUID family and model and the widest vector instructions, from the first processor."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_lstm", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    info = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
        "model name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512bw\n\n"
        "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 9\nmodel name\t: other\n"
    )
    assert bench.cpu_model(info) == "AMD EPYC (family 26 model 2), avx512"
    zen3 = info.replace(": 26", ": 25").replace(": 2\n", ": 1\n").replace(" avx512f avx512bw", "")
    assert bench.cpu_model(zen3) == "AMD EPYC (family 25 model 1), avx2"
    assert bench.cpu_model("model name\t: Some CPU\n") == "Some CPU"
    lib, version = platform.libc_ver()
    assert bench.memory_settings().startswith(f"{lib} {version}" if lib else "libc ?")


def test_rounds_are_seeded_shuffles_whose_neighbours_vary():
    """Each round's order is a permutation, the same in every run, and no entry always runs
    right after the same one (a rotation would keep every neighbour fixed)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from rounds import round_orders

    names = list("abcdefgh")
    orders = list(round_orders(names, 7))
    assert orders == list(round_orders(names, 7))  # seeded
    assert all(sorted(o) == names for o in orders)
    before = {n: {o[o.index(n) - 1] for o in orders if o.index(n)} for n in names}
    assert all(len(prev) > 1 for prev in before.values())


@pytest.mark.slow
def test_gpu_benchmark_script_runs_without_a_gpu():
    """``bench_gpu.py --cpu``: the correctness checks pass and every row of the table prints."""
    script = os.path.join(ROOT, "benchmarks", "bench_gpu.py")
    cmd = [sys.executable, script, "--quick", "--cpu", "--shapes", "S", "--rounds", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    errs = re.findall(r"^check bptt vs scan: .* ys (\S+) carry (\S+) grads (\S+)", out.stdout, re.M)
    assert len(errs) == 3 and all(float(e) < 1e-4 for row in errs for e in row)
    assert re.search(r"\| lstm_jax \(bptt\) \| [\d.]+ / [\d.]+ \(1\.00x / 1\.00x\) \|", out.stdout)
    assert "| jax.experimental.rnn (cuDNN) |" in out.stdout
    par_check = r"^check parallel in time .*: (\d+) iterations, max diff (\S+)$"
    par = re.search(par_check, out.stdout, re.M)
    assert par and 1 < int(par.group(1)) < 20 and float(par.group(2)) < 1e-5
    assert re.search(r"\| parallel in time \(Picard\) \| [\d.]+ / [\d.]+ ", out.stdout)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None, reason="no C++ compiler")
def test_native_recurrence_experiment_builds_and_agrees():
    """``native_lstm/bench_native.py --quick``: the C++ recurrence compiles against jaxlib's FFI
    headers, agrees with the default path (the script exits non-zero otherwise) and prints its
    rows."""
    script = os.path.join(ROOT, "benchmarks", "native_lstm", "bench_native.py")
    out = subprocess.run(
        [sys.executable, script, "--quick"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| tiny .* \| (fwd|train) \| .* \| ([\d.e+-]+) \|$", out.stdout, re.M)
    assert [m for m, _ in rows] == ["fwd", "train"]
    assert all(float(e) < 1e-4 for _, e in rows)


@pytest.mark.slow
def test_slstm_variants_agree_and_print_their_tables():
    """``bench_slstm.py --quick``: every variant's gradients (and the rule's ``jvp``) equal the
    default's (the script exits non-zero otherwise) and the tables print, the default as the
    reference row."""
    script = os.path.join(ROOT, "benchmarks", "bench_slstm.py")
    out = subprocess.run(
        [sys.executable, script, "--quick"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| (.+?) \| [\d.]+ \| ([\d.]+)x \|$", out.stdout, re.M)
    variants = ["scan (default)", "hoisted x W_x", "head-major", "hand JVP of the gates"]
    rule = "hand rule over the sequence"
    # the training table, then forward mode (the default and the rule)
    assert [name for name, _ in rows] == [*variants, rule, variants[0], rule]
    assert rows[0][1] == rows[5][1] == "1.00"
    assert len(re.findall(r"^\| (forward|grad .+?) \| [\d.]+ \|$", out.stdout, re.M)) == 3


def test_parallel_in_time_is_exact_after_T_iterations_and_differentiable():
    """``benchmarks/parallel_in_time.py``: step t is exact after t iterations, so T iterations
    give the sequential recurrence (outputs, final cell state and gradients) even for weights
    whose recurrence does not contract, where fewer iterations are far off."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import parallel_in_time as pit

    from lstm_jax import LSTMCell
    from lstm_jax.sequence import fast_lstm

    T, B, I, H = 12, 2, 3, 5
    k = jax.random.split(jax.random.key(0), 4)
    p = LSTMCell(H).init(k[0], I)
    p = p._replace(w_h=4.0 * p.w_h)  # a strong recurrent gain: no fast convergence
    xs = jax.random.normal(k[1], (T, B, I))
    h0, c0 = jax.random.normal(k[2], (B, H)), jax.random.normal(k[3], (B, H))

    def loss(f):
        def value(p, xs, h0, c0):
            hs, c_T = f(p, xs, h0, c0)
            return jnp.mean(hs**2) + jnp.mean(jnp.sin(c_T))

        return value

    def exact(p, xs, h0, c0):
        return fast_lstm.lstm_core(fast_lstm.Static(), p, xs, h0, c0, None, None)

    def parallel(iters):
        return lambda p, xs, h0, c0: pit.picard_lstm(p, xs, h0, c0, iters)

    for got, want in zip(parallel(T)(p, xs, h0, c0), exact(p, xs, h0, c0), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert float(jnp.max(jnp.abs(parallel(2)(p, xs, h0, c0)[0] - exact(p, xs, h0, c0)[0]))) > 1e-2
    args = (p, xs, h0, c0)
    g_par = jax.grad(loss(parallel(T)), argnums=(0, 1, 2, 3))(*args)
    g_seq = jax.grad(loss(exact), argnums=(0, 1, 2, 3))(*args)
    for got, want in zip(jax.tree.leaves(g_par), jax.tree.leaves(g_seq), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    iters, delta = pit.iterations_to_converge(*args, tol=1e-6, max_iters=T + 1)
    assert iters <= T + 1 and delta <= 1e-6


@pytest.mark.slow
def test_eager_benchmark_prints_its_table_and_keeps_no_code_mapped():
    """``bench_eager.py --quick``: a row per lstm_jax entry; on Linux, repeated eager gradients
    map no new memory (each used to compile and map its loops again)."""
    script = os.path.join(ROOT, "benchmarks", "bench_eager.py")
    out = subprocess.run(
        [sys.executable, script, "--quick"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(
        r"^\| (lstm_jax.+?) \| [\d.]+ \| [\d.]+ \| [\d.]+x \| (\d+|-) \|$", out.stdout, re.M
    )
    assert [name for name, _ in rows] == [
        "lstm_jax LSTM (default)",
        "lstm_jax LSTM (autodiff)",
        "lstm_jax.nnx RNN(OptimizedLSTMCell)",
    ]
    if sys.platform.startswith("linux"):
        assert all(mapped == "0" for _, mapped in rows)


@pytest.mark.slow
def test_data_parallel_benchmark_checks_gradients_and_prints_its_row():
    """``bench_data_parallel.py --quick``: two host devices in a subprocess (the flag must be set
    before JAX starts), the sharded gradient equal to the one-device one, one timed row."""
    script = os.path.join(ROOT, "benchmarks", "bench_data_parallel.py")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, script, "--quick"], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "split into 2 devices" in out.stdout
    row = re.search(
        r"^\| tiny \(4, 5, 3, 8\) \| [\d.]+ \| [\d.]+ \| [\d.]+x \| ([\d.]+e[-+]\d+) \|$",
        out.stdout,
        re.M,
    )
    assert row, out.stdout
    assert float(row.group(1)) < 1e-4
