"""Ensembles: several training runs of one small model, vmapped into a single compiled program.

A run is a :class:`TrainState`; an ensemble is the same pytree with a leading member axis
``N`` on every leaf (one params, optimiser state and step counter per member). The members
differ by their init key and, optionally, by optimiser hyperparameters (a learning rate per
member): with ``optax.inject_hyperparams`` the hyperparameters live in the optimiser state, so
vmapping over the state vmaps over them too.

Because ``jax.vmap`` changes only how the work is batched, member ``n`` of an ensemble follows
exactly the run that :func:`make_train_step` would take alone from the same init key, learning
rate and batches (up to float reassociation), in about the time one run takes on a device
whose cores a single small run leaves idle.

    >>> import jax, jax.numpy as jnp, optax
    >>> from lstm_jax import init_ensemble, train_ensemble
    >>> def loss_fn(w, batch):
    ...     x, y = batch
    ...     return jnp.mean(jnp.square(x @ w - y))
    >>> def batch_fn(key):
    ...     x = jax.random.normal(key, (8, 2))
    ...     return x, x @ jnp.array([[1.0], [-2.0]])
    >>> opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> init = lambda key: 0.1 * jax.random.normal(key, (2, 1))
    >>> states = init_ensemble(init, opt, jax.random.split(jax.random.key(0), 3),
    ...                        learning_rate=jnp.array([0.01, 0.1, 0.3]))
    >>> states, metrics = train_ensemble(loss_fn, opt, states, batch_fn, 100, jax.random.key(1))
    >>> metrics["loss"].shape, bool(metrics["loss"][-1, 2] < metrics["loss"][-1, 0])
    ((100, 3), True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lstm_jax.core.checks import Problems, is_array
from lstm_jax.core.validate import check_key
from lstm_jax.training.step import TrainState, init_train_state, make_train_step


def init_ensemble(
    init_fn: Callable[[jax.Array], Any],
    optimizer: optax.GradientTransformation,
    keys: jax.Array,
    **hyperparams: jax.Array,
) -> TrainState:
    """Initialises ``N`` members: ``TrainState`` with a leading axis ``N`` on every leaf.

    Args:
      init_fn: ``init_fn(key) -> params`` for one member.
      optimizer: any optax transformation. To vary a hyperparameter across members, build
        it with ``optax.inject_hyperparams`` (alone or inside ``optax.chain``).
      keys: ``(N,)`` PRNG keys, one per member (``jax.random.split(key, N)``).
      **hyperparams: ``name=(N,) array`` per-member values of injected hyperparameters, e.g.
        ``learning_rate=jnp.array([1e-3, 3e-3, 1e-2])``.

    Returns:
      The stacked :class:`TrainState` of the ensemble.

    Raises:
      ValueError: when ``keys`` is not a 1-D array of keys, a hyperparameter is not ``(N,)``,
        or the optimiser injects no hyperparameter of that name.
    """
    p = Problems("init_ensemble")
    n = _check_keys(p, keys)
    for name, value in hyperparams.items():
        if not is_array(value) or value.shape != (n,):
            got = getattr(value, "shape", type(value).__name__)
            p.value(f"hyperparameter `{name}` must be an array of shape (N,) = ({n},); got {got}.")
    if not isinstance(optimizer, optax.GradientTransformation):
        p.type(
            f"`optimizer` must be an optax.GradientTransformation; got {type(optimizer).__name__}."
        )
    p.raise_if_any()

    def one(key, values):
        state = init_train_state(init_fn(key), optimizer)
        return state._replace(opt_state=_set_hyperparams(state.opt_state, values))

    names = tuple(hyperparams)
    _check_injected(optimizer, init_fn(keys[0]), names)
    values = {k: jnp.asarray(v) for k, v in hyperparams.items()}
    return jax.vmap(one)(keys, values)


def make_ensemble_step(
    loss_fn: Callable[..., Any], optimizer: optax.GradientTransformation, *, shared_batch=False
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """``step(states, batches) -> (states, metrics)``: :func:`make_train_step` vmapped.

    Args:
      loss_fn, optimizer: as for :func:`make_train_step`.
      shared_batch: False: ``batches`` has a leading member axis ``N`` (each member sees its
        own data); True: one batch is shared by every member.

    Returns:
      A pure function; every metric has shape ``(N,)``.
    """
    step = make_train_step(loss_fn, optimizer)
    return jax.vmap(step, in_axes=(0, None if shared_batch else 0))


def train_ensemble(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    states: TrainState,
    batch_fn: Callable[[jax.Array], Any],
    num_steps: int,
    key: jax.Array,
) -> tuple[TrainState, dict]:
    """Trains every member for ``num_steps`` steps inside one ``jit``-compiled ``lax.scan``.

    Member ``n`` at step ``s`` trains on ``batch_fn(jax.random.split(fold_in(key, s), N)[n])``,
    so its data depend only on ``(key, s, n)`` and a lone run can replay them.

    Args:
      loss_fn, optimizer: as for :func:`make_train_step`.
      states: the ensemble, from :func:`init_ensemble`.
      batch_fn: ``batch_fn(key) -> batch`` for one member (e.g. a synthetic-data generator).
      num_steps: optimiser steps per member.
      key: PRNG key of the data stream.

    Returns:
      ``(states, metrics)`` with every metric of shape ``(num_steps, N)``.
    """
    p = Problems("train_ensemble")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        p.value(f"`num_steps` must be a positive int; got {num_steps!r}.")
    if not isinstance(states, TrainState):
        p.type(
            f"`states` must be a TrainState (from `init_ensemble`); got {type(states).__name__}."
        )
    p.raise_if_any()
    key = check_key("train_ensemble", "key", key)
    return _train(loss_fn, optimizer, batch_fn, num_steps, states, key)


def member_batch_keys(key: jax.Array, step: int | jax.Array, n: int) -> jax.Array:
    """``(N,)`` keys of the members' batches at ``step`` (see :func:`train_ensemble`)."""
    return jax.random.split(jax.random.fold_in(key, step), n)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _train(loss_fn, optimizer, batch_fn, num_steps, states, key):
    n = states.step.shape[0]
    step = make_ensemble_step(loss_fn, optimizer)

    def body(states, s):
        batches = jax.vmap(batch_fn)(member_batch_keys(key, s, n))  # leading axis N
        return step(states, batches)

    return jax.lax.scan(body, states, jnp.arange(num_steps))


def _check_keys(p: Problems, keys: Any) -> int:
    ok = is_array(keys) and keys.ndim == 1 and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    if not ok:
        got = f"shape {keys.shape}, dtype {keys.dtype}" if is_array(keys) else type(keys).__name__
        p.value(f"`keys` must be a 1-D array of PRNG keys, `jax.random.split(key, N)`; got {got}.")
        return 0
    return int(keys.shape[0])


def _is_injected(s: Any) -> bool:
    return isinstance(s, tuple) and hasattr(s, "hyperparams") and hasattr(s, "inner_state")


def _set_hyperparams(opt_state: Any, values: dict) -> Any:
    """Writes ``values`` into every injected-hyperparameter state that has those names."""
    if not values:
        return opt_state

    def put(s):
        if not _is_injected(s):
            return s
        new = {
            k: jnp.asarray(v, s.hyperparams[k].dtype)
            for k, v in values.items()
            if k in s.hyperparams
        }
        return s._replace(hyperparams={**s.hyperparams, **new})

    return jax.tree.map(put, opt_state, is_leaf=_is_injected)


def _check_injected(optimizer, params, names) -> None:
    if not names:
        return
    found: set[str] = set()
    state = jax.eval_shape(optimizer.init, params)
    for s in jax.tree.leaves(state, is_leaf=_is_injected):
        if _is_injected(s):
            found |= set(s.hyperparams)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(
            f"`init_ensemble`: the optimizer injects no hyperparameter {missing}; build it with "
            f"`optax.inject_hyperparams`, e.g. `optax.inject_hyperparams(optax.adam)("
            f"learning_rate=1e-3)`; it injects {sorted(found)}."
        )
