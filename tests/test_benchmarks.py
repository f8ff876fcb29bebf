"""A smoke run of the benchmark script, so that it keeps working as the library changes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_lstm.py")
N_PEERS = 6  # len(benchmarks/peers.py's PEERS): flax, nnx, equinox, haiku, keras, torch


@pytest.mark.slow
def test_quick_benchmark_runs_and_prints_every_table():
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run(
        [sys.executable, SCRIPT, "--quick"], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    # lstm_jax is the reference row, so its own ratios are exactly 1
    assert re.search(r"\| lstm_jax \(bptt\) \| [\d.]+ / [\d.]+ \(1\.00x / 1\.00x\) \|", text)
    assert re.search(r"\| lstm_jax \(autodiff\) \| [\d.]+ / [\d.]+ \([\d.]+x / [\d.]+x\) \|", text)
    skipped = out.stderr.count("skipping ")  # a peer whose package is missing
    speed_rows = re.findall(r"^\| .* \| [\d.]+ / [\d.]+ \([\d.]+x / [\d.]+x\) \|$", text, re.M)
    assert len(speed_rows) == 2 + N_PEERS - skipped  # both lstm_jax rows and every installed peer
    assert "| tiny | " in text  # the targets table
    compile_row = re.search(r"\| lstm_jax \(bptt\) \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \|", text)
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
