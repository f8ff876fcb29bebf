"""Training steps as pure functions: the state, one optimiser step, one evaluation step.

The contract, as in optax: a loss function ``loss_fn(params, batch) -> loss`` (or
``(loss, metrics)`` with a dict of scalar metrics) and any ``optax.GradientTransformation``
make a step ``step(state, batch) -> (state, metrics)``. The step is *not* jitted: it has no
Python side effects and no host callbacks, so callers can ``jax.jit`` it (donating the state),
``jax.vmap`` it over a batch of states (one per seed), or shard it over a device mesh.

    >>> import jax, jax.numpy as jnp, optax
    >>> from lstm_jax import init_train_state, make_train_step
    >>> def loss_fn(w, batch):
    ...     x, y = batch
    ...     return jnp.mean(jnp.square(x @ w - y))
    >>> opt = optax.sgd(0.1)
    >>> state = init_train_state(jnp.zeros((2, 1)), opt)
    >>> step = jax.jit(make_train_step(loss_fn, opt), donate_argnums=0)
    >>> x = jnp.eye(2); y = jnp.ones((2, 1))
    >>> for _ in range(50):
    ...     state, metrics = step(state, (x, y))
    >>> round(float(metrics["loss"]), 4), int(state.step)
    (0.0, 50)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lstm_jax.core.validate import check_key
from lstm_jax.training.checks import check_loss, check_loss_fn, check_trainable


class TrainState(NamedTuple):
    """Everything an optimiser step changes, as one pytree."""

    params: Any  # the model's params pytree
    opt_state: Any  # optax state for `params`
    step: jax.Array  # () int32, optimiser steps taken


def init_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """Returns ``TrainState(params, optimizer.init(params), step=0)``."""
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "`init_train_state`: `optimizer` must be an optax.GradientTransformation "
            f"(e.g. `optax.adam(1e-3)`); got {type(optimizer).__name__}."
        )
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def _split_loss(out: Any) -> tuple[jax.Array, dict]:
    """``loss`` or ``(loss, metrics)`` -> ``(loss, metrics)``; decided while tracing."""
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], dict):
            raise TypeError(
                "`loss_fn` must return a scalar loss or `(loss, metrics)` with a dict of scalar "
                f"metrics; got a tuple of {len(out)}."
            )
        return out[0], out[1]
    return out, {}


def train_call(key) -> tuple[str, str]:
    """How a training step calls ``loss_fn`` (with or without ``key``), and the hint for a
    signature that cannot take it."""
    if key is None:
        return "loss_fn(params, batch)", (
            " The batch arrives whole (e.g. `(x, y)`): unpack it inside, `x, y = batch`."
        )
    return "loss_fn(params, batch, key)", (
        " With `key`, the loss also gets the step's key: `def loss_fn(params, batch, key=None)`."
    )


def make_train_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    *,
    key: jax.Array | None = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """Builds ``step(state, batch) -> (state, metrics)``: one gradient step of ``optimizer``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` or ``-> (loss, metrics)``. With ``key``,
        it is called as ``loss_fn(params, batch, key)`` with a fresh key every step (for
        dropout): ``jax.random.fold_in(key, state.step)``, so the stream of keys is a function
        of the step alone and a resumed run draws the same keys.
      optimizer: any optax transformation; chain ``optax.clip_by_global_norm`` for clipping and
        pass a schedule as its learning rate.
      key: optional PRNG key for stochastic losses (a typed ``jax.random.key`` or a raw
        ``jax.random.PRNGKey``).

    Returns:
      A pure function; ``metrics`` holds ``loss``, ``grad_norm`` (global L2 norm of the
      gradients before the optimiser) and the loss's own metrics, all scalars.

    Raises:
      TypeError: when ``optimizer`` is not an optax transformation, ``key`` is not a PRNG
        key or ``loss_fn`` cannot be called as above; when the step is traced, when
        ``loss_fn`` returns no real floating scalar or a leaf of ``params`` is not floating.
    """
    if key is not None:
        key = check_key("make_train_step", "key", key)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "`make_train_step`: `optimizer` must be an optax.GradientTransformation; got "
            f"{type(optimizer).__name__}."
        )
    check_loss_fn("make_train_step", loss_fn, *train_call(key))

    def objective(params, batch, step):
        if key is None:
            out = loss_fn(params, batch)
        else:
            out = loss_fn(params, batch, jax.random.fold_in(key, step))
        loss, metrics = _split_loss(out)
        check_loss("make_train_step", loss)
        return loss, metrics

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        check_trainable("make_train_step", state.params)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (loss, metrics), grads = grad_fn(state.params, batch, state.step)
        # optax mixes Python floats with int32 counts (e.g. Adam's bias correction), so its
        # update runs under standard promotion even when the caller's loss runs under strict.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}
        return TrainState(params, opt_state, state.step + 1), metrics

    return step


EVAL_WITHOUT_KEY = (
    " Evaluation passes no key: give it a default, e.g. `def loss_fn(params, batch, key=None)`,"
    " and skip dropout when it is None."
)


def make_eval_step(loss_fn: Callable[..., Any]) -> Callable[[Any, Any], dict]:
    """Builds ``eval_step(params, batch) -> metrics``: the loss and the loss's own metrics.

    ``loss_fn`` is the same function given to :func:`make_train_step` (called without a key:
    evaluation is deterministic). A loss that also takes a key for training therefore needs a
    default for it (``def loss_fn(params, batch, key=None)``, no dropout when it is None).

    Raises:
      TypeError: when ``loss_fn`` cannot be called as ``loss_fn(params, batch)``.
    """
    check_loss_fn("make_eval_step", loss_fn, "loss_fn(params, batch)", EVAL_WITHOUT_KEY)

    def eval_step(params: Any, batch: Any) -> dict:
        loss, metrics = _split_loss(loss_fn(params, batch))
        check_loss("make_eval_step", loss)
        return {"loss": loss, **metrics}

    return eval_step
