"""Shared test utilities."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

X64 = bool(jax.config.read("jax_enable_x64"))
FLOAT = jnp.float64 if X64 else jnp.float32
RTOL = 1e-10 if X64 else 2e-5
ATOL = 1e-10 if X64 else 2e-5


def optimized_env() -> dict[str, str]:
    """This process's environment without the tests' ``--xla_backend_optimization_level=0``
    (see conftest.py), for subprocesses whose time goes into running, not compiling."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_backend_optimization" not in f]
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def randomize(params, key, scale=0.5):
    """Replaces every leaf with N(0, scale^2) noise, so zero/one init values hide nothing."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    new = [
        scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(tree, new)


def normal(key, shape, dtype=None):
    return jax.random.normal(key, shape, FLOAT if dtype is None else dtype)


def assert_close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(
        np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol
    )
