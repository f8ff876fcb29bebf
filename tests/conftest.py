"""Test configuration: strict dtype promotion and rank promotion = raise for every test.

Tests that drive third-party code which relies on implicit promotion opt out with
``@pytest.mark.loose_promotion``. The float64 pass runs the tests marked ``x64`` in a separate
``JAX_ENABLE_X64=1`` invocation.

The tests' computations are small, so compiling them takes most of the suite's time (many
tests make a hundred or more small compiles, each op of an eager computation one). Two XLA CPU
options therefore apply here, unless ``XLA_FLAGS`` already names them:

- ``--xla_backend_optimization_level=0``: no LLVM optimisation passes (about a quarter less
  time in all, measured on the fast-path tests and a training test);
- ``--xla_cpu_use_fusion_emitters=false``: XLA's older LLVM IR emitters instead of its MLIR
  fusion emitters, whose fixed set-up cost dominates a small compile (one eager op: 43 -> 18 ms;
  tests/test_bptt.py: 112 -> 70 s).

The numbers a test compares do not depend on either beyond float tolerance; the benchmarks
measure without them. Subprocesses the tests start (the command, notebooks, workers) inherit
both; those that spend their time running rather than compiling drop the first
(``helpers.optimized_env``).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "loose_promotion: run without strict dtype/rank promotion")
    config.addinivalue_line("markers", "x64: float64 tests, run again with JAX_ENABLE_X64=1")


@pytest.fixture(autouse=True)
def _strict_promotion(request):
    if request.node.get_closest_marker("loose_promotion"):
        yield
        return
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


X64 = bool(jax.config.read("jax_enable_x64"))
