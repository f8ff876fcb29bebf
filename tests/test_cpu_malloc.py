"""``tune_cpu_malloc``: glibc keeps freed blocks for reuse, results do not change, and it says
when it cannot apply. The allocator is process-wide, so the real calls run in subprocesses."""

import platform
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax import cpu_malloc

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")


def _python(code, tmp_path=None):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


# Page faults of malloc'ing, touching and freeing 64 MiB, twice: the second round shows whether
# the freed block was kept (a handful of faults) or handed back to the kernel (one per page).
_FAULTS = """
import ctypes, resource
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n = 64 << 20
def round_trip():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
round_trip()
print(round_trip())
"""


@needs_glibc
def test_freed_blocks_are_kept_for_reuse():
    as_it_comes = int(_python(_FAULTS))
    tuned = int(_python("import lstm_jax as lj\nlj.tune_cpu_malloc()\n" + _FAULTS))
    pages = (64 << 20) // 4096
    # glibc's default serves the block with its own mmap and unmaps it on free: one fault per
    # 4 KiB page again (a host with transparent huge pages always on faults per 2 MiB instead)
    assert as_it_comes > pages // 2 or as_it_comes >= (64 << 20) // (2 << 20)
    assert tuned < min(pages // 50, as_it_comes), (tuned, as_it_comes)


_STEP = """
import warnings
import jax, jax.numpy as jnp, numpy as np
import lstm_jax as lj
with warnings.catch_warnings():
    warnings.simplefilter("error")  # tuning before any computation must not warn
    {tune}
layer = lj.LSTM(32)
p = layer.init(jax.random.key(0), 8)
x = jax.random.normal(jax.random.key(1), (4, 20, 8))
loss = lambda p, x: jnp.mean(layer.apply(p, x)[1] ** 2)
g = jax.jit(jax.grad(loss, argnums=(0, 1)))(p, x)
np.savez("{name}.npz", *[np.asarray(a) for a in jax.tree.leaves(g)])
"""


@needs_glibc
def test_results_do_not_change(tmp_path):
    out = _python(_STEP.format(tune="print(lj.tune_cpu_malloc())", name="tuned"), tmp_path)
    assert out.strip() == str({"M_ARENA_MAX": 1, "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1})
    _python(_STEP.format(tune="pass", name="plain"), tmp_path)
    tuned, plain = np.load(tmp_path / "tuned.npz"), np.load(tmp_path / "plain.npz")
    assert len(tuned.files) == len(plain.files) == 4  # w_x, w_h, b and the input
    for k in plain.files:
        np.testing.assert_array_equal(tuned[k], plain[k])


@needs_glibc
def test_after_the_first_computation_it_warns():
    out = _python(
        """
        import warnings
        import jax.numpy as jnp
        import lstm_jax as lj
        (jnp.ones(3) + 1).block_until_ready()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(sorted(lj.tune_cpu_malloc()))
        print([str(m.message) for m in w if m.category is RuntimeWarning])
        """
    )
    applied, warned = out.strip().splitlines()
    assert applied == str(["M_ARENA_MAX", "M_MMAP_MAX", "M_TRIM_THRESHOLD"])
    assert "before the first JAX computation" in warned


def test_without_glibc_it_changes_nothing_and_says_so(monkeypatch):
    monkeypatch.setattr(cpu_malloc, "_glibc", lambda: None)
    with pytest.warns(RuntimeWarning, match="not glibc.*nothing was changed"):
        assert lj.tune_cpu_malloc() == {}


def test_a_refused_option_is_an_error(monkeypatch):
    class Refusing:
        @staticmethod
        def mallopt(code, value):
            return 0

    monkeypatch.setattr(cpu_malloc, "_glibc", lambda: Refusing)
    monkeypatch.setattr(cpu_malloc, "_jax_started", lambda: False)
    with pytest.raises(RuntimeError, match=r"refused mallopt\(M_ARENA_MAX, 1\)"):
        lj.tune_cpu_malloc()


@needs_glibc
def test_the_readme_block_runs_as_written():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(
        r"```python\n(import lstm_jax as lj\nlj\.tune_cpu_malloc\(\).*?)```", readme, re.S
    )
    # imported first, so that only the block's own call runs under the error filter
    setup = "import warnings\nimport lstm_jax\nwarnings.simplefilter('error')\n"
    out = _python(setup + code + "print('ok')\n")
    assert out.strip() == "ok"
