"""Test configuration: strict dtype promotion and rank promotion = raise for every test.

Tests that drive third-party code which relies on implicit promotion opt out with
``@pytest.mark.loose_promotion``. The float64 pass runs the tests marked ``x64`` in a separate
``JAX_ENABLE_X64=1`` invocation.

The tests' computations are small, so compiling them takes most of the suite's time (many
tests make a hundred or more small compiles, each op of an eager computation one). Two XLA CPU
options therefore apply here, unless ``XLA_FLAGS`` already names them or this jaxlib
lacks them:

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

import atexit
import importlib.util
import mmap
import os
import shutil
import tempfile
from pathlib import Path


def _xla_knows(name: str) -> bool:
    """Whether this jaxlib's XLA defines the option ``name``: XLA aborts the whole process on
    an unknown option in ``XLA_FLAGS``, and options come and go between releases."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or spec.origin is None:
        return False
    for lib in Path(spec.origin).parent.rglob("*.so"):
        if lib.stat().st_size == 0:
            continue
        with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m.find(name.encode()) >= 0:
                return True
    return False


os.environ.setdefault("KERAS_BACKEND", "jax")
# The command keeps compiled programs on disk (lstm_jax.compile_cache). Its runs in the tests,
# in this process and in subprocesses, compile afresh as a first run does (test_compile_cache.py
# turns the cache on where it tests it), and whatever is cached goes to a directory of this
# session only, never the home directory.
os.environ.setdefault("LSTM_JAX_COMPILE_CACHE", "0")
if not os.environ.get("LSTM_JAX_CACHE_DIR"):
    _cache = tempfile.mkdtemp(prefix="lstm_jax_test_xla_")
    os.environ["LSTM_JAX_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
    _name = _flag[2:].split("=")[0]
    if _name not in os.environ.get("XLA_FLAGS", "") and _xla_knows(_name):
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
