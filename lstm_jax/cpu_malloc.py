"""Keep freed host memory in the process: glibc ``malloc`` settings for XLA's CPU runtime.

XLA's CPU runtime allocates each large temporary of a compiled step (a ``(T, B, 4H)`` gate
array, a GEMM's output, a cotangent) with ``malloc`` and frees it when the step is done. With
glibc's defaults blocks of that size go back to the kernel: a block served by its own ``mmap``
is unmapped on ``free``, a worker thread's arena is a heap of at most 64 MiB, and the top of a
heap is trimmed. So every call of the step faults all those pages in again, and on a virtual
machine a page fault is expensive: the LSTM's training step at ``B, T, I, H = 64, 100, 128, 256``
took 110 ms as it comes and 69 ms with the settings below, its ``jvp`` 134 and 71 ms, and at
``T = 1000`` 1.23 s and 0.74 s (2-core AMD EPYC VM, glibc 2.36; ``benchmarks/RESULTS.md``, where
every library in the same process gains, PyTorch's CPU LSTM about as much as this one).

:func:`tune_cpu_malloc` sets three ``mallopt`` options so that freed blocks are reused::

    M_ARENA_MAX = 1                one arena for every thread, grown with brk and not capped
    M_MMAP_MAX = 0                 no block gets its own mmap
    M_TRIM_THRESHOLD = 2**31 - 1   the top of the heap is never handed back

The price is memory: the process keeps its peak footprint for its lifetime (freed memory is
reused, not returned), and fragmentation can raise the peak (a script timing that step at
``T = 100`` and ``T = 1000`` peaked at 3.0 GiB resident instead of 2.0 GiB). One arena means
threads share its lock, which matters for programs that ``malloc`` from many threads at once,
not for XLA's few large blocks.

It takes full effect only before JAX's first computation: a thread that has already allocated
keeps its own arena. The same settings can be given before any program starts, through the
environment::

    GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647

A lighter alternative keeps no memory back, and where these settings cost 2-10 % (a small
model: ``B, T, I, H = 32, 100, 1, 50``) it costs nothing; it can only be set through the
environment. ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc 2.35 or newer, transparent huge
pages in ``madvise`` or ``always`` mode) backs large blocks with 2 MiB pages, one fault per
2 MiB instead of per 4 KiB. At ``64, 100, 128, 256`` it gained about three quarters as much
(training step 0.91x, ``jvp`` 0.87x; these settings 0.89x and 0.83x), and less at
``32, 64, 256, 512`` (0.99x and 0.93x against 0.87x and 0.80x; ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import ctypes
import platform
import sys
import warnings

# (name, mallopt parameter code from glibc's malloc.h, value)
_OPTIONS = (
    ("M_ARENA_MAX", -8, 1),
    ("M_MMAP_MAX", -4, 0),
    ("M_TRIM_THRESHOLD", -1, 2**31 - 1),
)


def _glibc():
    """The C library as a ``ctypes`` handle when it is glibc, else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def _jax_started() -> bool:
    """Whether JAX has created its backends (its first computation has run)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # another JAX layout: say nothing rather than guess
        return False


def tune_cpu_malloc() -> dict[str, int]:
    """Sets glibc ``malloc`` to keep freed memory for reuse (see the module docstring).

    Call it first, before any JAX computation, e.g. at the top of a training script or a
    notebook::

        import lstm_jax as lj
        lj.tune_cpu_malloc()

    Returns the options set, ``{"M_ARENA_MAX": 1, "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": ...}``.
    Where the C library is not glibc (macOS, Windows, musl) nothing is changed: it warns and
    returns ``{}``. After JAX has already run a computation it still sets the options but warns
    that they take only partial effect. Numerical results do not change, only where memory
    comes from.
    """
    libc = _glibc()
    if libc is None:
        warnings.warn(
            "tune_cpu_malloc: the C library here is not glibc "
            f"({sys.platform}, {platform.libc_ver()[0] or 'unknown libc'}); nothing was changed",
            RuntimeWarning,
            stacklevel=2,
        )
        return {}
    if _jax_started():
        warnings.warn(
            "tune_cpu_malloc: JAX has already run a computation in this process, and threads "
            "that have allocated keep their own malloc arenas, so the settings take only partial "
            "effect; call it before the first JAX computation",
            RuntimeWarning,
            stacklevel=2,
        )
    applied = {}
    for name, code, value in _OPTIONS:
        if libc.mallopt(ctypes.c_int(code), ctypes.c_int(value)) != 1:
            raise RuntimeError(f"tune_cpu_malloc: glibc refused mallopt({name}, {value})")
        applied[name] = value
    return applied
