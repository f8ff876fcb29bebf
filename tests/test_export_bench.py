"""A smoke run of the export benchmark, so that it keeps working as the library changes."""

import os
import re
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks", "bench_export.py")


@pytest.mark.slow
def test_quick_export_benchmark_prints_both_rows():
    pytest.importorskip("onnxruntime")
    out = subprocess.run(
        [sys.executable, SCRIPT, "--quick"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| (main|M) \| .* \| ([\d.]+)x \| ([\d.e+-]+) \|$", out.stdout, re.M)
    assert [r[0] for r in rows] == ["main", "M"]
    assert all(float(diff) < 1e-5 for _, _, diff in rows)  # both runtimes agree
