"""Test configuration: strict dtype promotion and rank promotion = raise for every test.

Tests that drive third-party code which relies on implicit promotion opt out with
``@pytest.mark.loose_promotion``. The float64 pass runs the tests marked ``x64`` in a separate
``JAX_ENABLE_X64=1`` invocation.

The tests' computations are small, so compiling them takes most of the suite's time; XLA's CPU
backend therefore compiles without LLVM's optimisation passes here (about a quarter less time
in all, measured on the fast-path tests and a training test). The numbers a test compares
do not depend on it beyond float tolerance; the benchmarks measure without it. Subprocesses the
tests start (the command, notebooks, workers) inherit it.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

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
