"""A smoke run of the benchmark script, so that it keeps working as the library changes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_lstm.py")
N_PEERS = 6  # len(benchmarks/peers.py's PEERS): flax, nnx, equinox, haiku, keras, torch
N_GRU_PEERS = 3  # len(GRU_PEERS): flax, keras, torch


@pytest.mark.slow
def test_quick_benchmark_runs_and_prints_every_table():
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run(
        [sys.executable, SCRIPT, "--quick"], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    # lstm_jax's default layer is the reference row (fwd / train / jvp ms), so its ratio is 1
    for cell in ("LSTM", "GRU"):
        assert re.search(
            rf"\| lstm_jax {cell} \(default\) \| [\d.]+ / [\d.]+ / [\d.]+ \(1\.00x\) \|", text
        )
        assert re.search(
            rf"\| lstm_jax {cell} \(autodiff\) \| [\d.]+ / [\d.]+ / [\d.]+ \([\d.]+x\) \|", text
        )
    skipped = out.stderr.count("skipping ")  # a peer whose package is missing
    speed_rows = re.findall(r"^\| .* \| [\d.]+ / [\d.]+ / (?:[\d.]+|-) \([\d.]+x\) \|$", text, re.M)
    # both lstm_jax rows per cell and every installed peer (torch has no jvp column)
    assert len(speed_rows) == 4 + N_PEERS + N_GRU_PEERS - skipped
    assert text.count("| tiny | ") == 2  # the targets tables, LSTM and GRU
    compile_row = re.search(
        r"\| lstm_jax LSTM \(default\) \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \|", text
    )
    assert compile_row and all(float(t) > 0 for t in compile_row.groups())
    long_row = re.search(r"\| bptt \| 10 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", text)
    assert long_row and float(long_row.group(2)) > 0  # a peak RSS was measured
    assert re.search(r"\| \(2, 5, 3, 4\) \| .* \| [\d.]+x / [\d.]+x \|", text)  # bf16 row


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
