"""Checks shared by the training loops: what a loss returns, what params may hold, and the
loops' own options. They run in plain Python on shapes and dtypes (at trace time under
``jit``), so a bad loss or params tree is refused before XLA sees it."""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.core.validate import check_float


def check_loss_fn(where: str, loss_fn: Any, call: str, hint: str = "") -> None:
    """Refuses a ``loss_fn`` that is not callable, or whose signature cannot take the
    positional arguments of ``call`` (e.g. ``"loss_fn(params, batch)"``), when the step is
    built: a wrong signature would otherwise surface as Python's bare ``missing 1 required
    positional argument`` from deep inside the first traced step (for a validation loss, only
    after the first epoch)."""
    if not callable(loss_fn):
        raise TypeError(
            f"`{where}`: `loss_fn` must be callable, called as `{call}`; got "
            f"{type(loss_fn).__name__}."
        )
    try:
        sig = inspect.signature(loss_fn)
    except (TypeError, ValueError):  # builtins, some C wrappers: the call itself will tell
        return
    n = call.count(",") + 1
    try:
        sig.bind(*range(n))
    except TypeError as e:
        name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        raise TypeError(
            f"`{where}`: `loss_fn` is called as `{call}`, which `{name}{sig}` does not accept "
            f"({e}).{hint}"
        ) from None


def check_loss(where: str, loss: Any) -> None:
    """Refuses a loss that is not a real floating scalar (``jax.grad`` needs one)."""
    if not hasattr(loss, "shape") or not hasattr(loss, "dtype"):
        raise TypeError(
            f"`{where}`: `loss_fn` must return a scalar JAX array (or `(loss, metrics)`); got "
            f"{type(loss).__name__}."
        )
    if loss.shape != ():
        raise ValueError(
            f"`{where}`: `loss_fn` must return a scalar loss (shape ()); got {loss.shape}. "
            "Average over the batch, e.g. `jnp.mean(...)`."
        )
    if not jnp.issubdtype(loss.dtype, jnp.floating):
        raise TypeError(
            f"`{where}`: `loss_fn` must return a real floating loss (float32, float64, ...) to "
            f"be differentiated; got dtype={loss.dtype}. "
            + (
                "Take `jnp.abs` or `.real` of a complex loss."
                if jnp.issubdtype(loss.dtype, jnp.complexfloating)
                else "Cast it, e.g. `loss.astype(jnp.float32)`."
            )
        )


def check_trainable(where: str, params: Any) -> None:
    """Refuses params with a leaf that gradients cannot flow into (ints, bools, non-arrays)."""
    bad = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            got = f"dtype={dtype}" if dtype is not None else type(leaf).__name__
            bad.append(f"params{jax.tree_util.keystr(path)} ({got})")
    if bad:
        raise TypeError(
            f"`{where}`: every leaf of `params` must be a floating array to be trained; got "
            f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Keep integer constants "
            "out of the params (close over them in `loss_fn`, or put them in the batch)."
        )


def check_clip_norm(where: str, clip_norm: Any) -> float | None:
    """``clip_norm`` as a positive finite float, or None (no clipping)."""
    if clip_norm is None:
        return None
    return check_float(where, "clip_norm", clip_norm, low=0.0, low_open=True)


def first_bad_step(bad: jax.Array, loss: jax.Array, step: jax.Array) -> jax.Array:
    """The first optimiser step (1-based) whose loss was not finite, or 0: updated on device,
    so the loops check it without waiting for every step."""
    return jnp.where((bad == 0) & ~jnp.isfinite(loss), step, bad)


def raise_if_bad(where: str, bad: Any, checkpoint: Any, saved_step: int | None) -> None:
    """Raises ``FloatingPointError`` naming the step when ``bad`` (from :func:`first_bad_step`)
    is set."""
    step = int(np.asarray(bad))
    if step == 0:
        return
    kept = (
        f" The checkpoint {checkpoint} holds the last good state (step {saved_step})."
        if checkpoint is not None and saved_step is not None
        else ""
    )
    raise FloatingPointError(
        f"`{where}`: the training loss is not finite (NaN or inf) at step {step}; training "
        f"stopped.{kept} Lower the learning rate, clip the gradients (`clip_norm`), or check "
        "the data for NaN/inf."
    )
