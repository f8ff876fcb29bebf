"""Compile once per machine, not once per process: JAX's persistent compilation cache.

Every new Python process compiles its programs again. For ``lstm-jax train``'s default run
(``LSTM(50) + Dense(1)``, 40 epochs of the El Nino windows) that is about 5 of its 17 seconds on
a 2-core machine: the training and evaluation steps twice each (the last batch of an epoch is
smaller), the parameter initialisation and a few dozen small eager operations. JAX can keep
compiled programs on disk and load them in the next process, but by default it stores only
programs that took at least a second to compile, so most of them are compiled anew each time.

:func:`enable_compile_cache` points JAX's cache at a directory and stores every program,
however quick its compile. A program is found again only when everything that shaped it is the
same: the computation, the shapes and dtypes, the JAX and jaxlib versions, the device, and the
XLA options (``XLA_FLAGS``), so a cached program computes exactly what a fresh compile would.
The default directory holds one folder per CPU model and instruction set, so a home directory
shared between machines never hands one machine code compiled for another's instructions.

The command (``lstm-jax``) uses it for every subcommand unless given ``--no-compile-cache``
(or ``LSTM_JAX_COMPILE_CACHE=0``) or run where JAX already has a cache directory
(``JAX_COMPILATION_CACHE_DIR``, which it then uses). The directory is trusted: whoever can
write to it can make the process run code, so it is created readable by its owner only; never
point it at a directory others can write.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

ENV_DIR = "LSTM_JAX_CACHE_DIR"  # overrides the default directory
# Beyond 1 GiB the cache drops its least recently used programs. With a size limit JAX also
# takes a file lock around every read and write, so processes can share the directory.
MAX_BYTES = 1 << 30

# The JAX options the cache is made of; the command saves and restores them around a run.
_OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
    "jax_compilation_cache_max_size",
)


def default_cache_dir() -> Path:
    """``$LSTM_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/lstm_jax/xla/<cpu>`` (``~/.cache`` when
    ``XDG_CACHE_HOME`` is unset), where ``<cpu>`` names this machine's CPU model and
    instruction set."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lstm_jax" / "xla" / _cpu_tag()


def _cpu_tag() -> str:
    """A short name for the host CPU: architecture plus a hash of its model and feature flags
    (from ``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    ident = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part"):
                    ident.append(line)
                if line.strip() == "":  # the first processor's block is enough
                    break
    except OSError:
        pass
    digest = hashlib.sha256("\n".join(ident).encode()).hexdigest()[:12]
    return f"{platform.machine() or 'cpu'}-{digest}"


def enable_compile_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Stores every compiled program under ``path`` and loads it from there in later processes.

    Takes effect at once, for programs compiled from then on (earlier ones stay in memory).
    Call it at the top of a script or notebook::

        import lstm_jax as lj
        lj.enable_compile_cache()   # ~/.cache/lstm_jax/xla/<cpu>, or $LSTM_JAX_CACHE_DIR

    Args:
      path: the cache directory, created (owner-only) if missing; default
        :func:`default_cache_dir`.

    Returns:
      The directory in use; None when the default directory cannot be created (a read-only
      home, say), after one warning: then nothing is cached and everything else works as
      before.

    Raises:
      TypeError: when ``path`` is not a string or path.
      ValueError: when ``path`` exists and is not a directory.
      OSError: when a ``path`` that was given cannot be created.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "`enable_compile_cache`: `path` must be a directory path (str or os.PathLike) or "
            f"None; got {type(path).__name__}."
        )
    given = path is not None
    where = Path(path).expanduser() if given else default_cache_dir()
    if where.exists() and not where.is_dir():
        raise ValueError(
            f"`enable_compile_cache`: `path` {str(where)!r} exists and is not a directory."
        )
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        if given:
            raise
        warnings.warn(
            f"lstm_jax: cannot create the compilation cache {where} ({e.strerror or e}); "
            f"programs will be compiled in every process. Set {ENV_DIR} to a writable "
            "directory to cache them.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if importlib.util.find_spec("filelock") is not None:  # JAX locks and evicts with it
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    _jax_cache.set_cache_dir(str(where))
    _jax_cache.reset_cache()  # JAX decides once per process whether to cache; decide again
    return where


def cache_settings() -> dict[str, Any]:
    """The current values of the JAX options :func:`enable_compile_cache` sets."""
    return {name: getattr(jax.config, name) for name in _OPTIONS}


def restore_cache_settings(settings: dict[str, Any]) -> None:
    """Puts back options saved by :func:`cache_settings` (and lets JAX decide afresh)."""
    for name, value in settings.items():
        jax.config.update(name, value)
    _jax_cache.reset_cache()
