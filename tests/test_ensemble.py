"""A vmapped ensemble equals N separate runs of make_train_step with the same keys and data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lstm_jax import Dense, LSTMCell, scan
from lstm_jax.data import adding_problem
from lstm_jax.training.ensemble import (
    init_ensemble,
    make_ensemble_step,
    member_batch_keys,
    train_ensemble,
)
from lstm_jax.training.step import init_train_state, make_train_step

CELL, HEAD = LSTMCell(4), Dense(1)


def init_fn(key):
    k_c, k_h = jax.random.split(key)
    return {"cell": CELL.init(k_c, 2), "head": HEAD.init(k_h, CELL.output_size)}


def loss_fn(params, batch):
    xs, ys = batch
    _, hs = scan(CELL, params["cell"], xs)  # (B, T, H)
    pred = HEAD.apply(params["head"], hs[:, -1])  # (B, 1)
    return jnp.mean(jnp.square(pred - ys))


def batch_fn(key):
    return adding_problem(key, 8, 6)


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6)


@pytest.mark.slow
def test_ensemble_equals_separate_runs_over_seeds_and_learning_rates():
    N, steps = 3, 15
    lrs = jnp.array([1e-3, 1e-2, 3e-2])
    opt = optax.chain(
        optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.adam)(learning_rate=0.5)
    )
    keys = jax.random.split(jax.random.key(0), N)
    data_key = jax.random.key(7)
    states = init_ensemble(init_fn, opt, keys, learning_rate=lrs)
    states, metrics = train_ensemble(loss_fn, opt, states, batch_fn, steps, data_key)
    assert metrics["loss"].shape == (steps, N)
    np.testing.assert_array_equal(states.step, [steps] * N)
    # An injected hyperparameter lives in the optimiser state, so one compiled lone step serves
    # every learning rate: each lone run starts from the state of its own optimiser.
    step = jax.jit(make_train_step(loss_fn, opt))
    for n in range(N):
        lone = optax.chain(
            optax.clip_by_global_norm(1.0),
            optax.inject_hyperparams(optax.adam)(learning_rate=float(lrs[n])),
        )
        state = init_train_state(init_fn(keys[n]), lone)
        losses = []
        for s in range(steps):
            state, m = step(state, batch_fn(member_batch_keys(data_key, s, N)[n]))
            losses.append(m["loss"])
        _close(jax.tree.map(lambda a, n=n: a[n], states.params), state.params)
        np.testing.assert_allclose(metrics["loss"][:, n], np.stack(losses), rtol=2e-5, atol=2e-6)
    # The members really differ: the learning rates give different final losses.
    assert len(set(np.round(np.asarray(metrics["loss"][-1]), 6))) == N


def test_shared_batch_step_equals_separate_steps():
    opt = optax.sgd(0.1)
    keys = jax.random.split(jax.random.key(1), 2)
    states = init_ensemble(init_fn, opt, keys)
    batch = batch_fn(jax.random.key(2))
    new, metrics = jax.jit(make_ensemble_step(loss_fn, opt, shared_batch=True))(states, batch)
    assert metrics["grad_norm"].shape == (2,)
    step = jax.jit(make_train_step(loss_fn, opt))
    for n in range(2):
        lone, m = step(init_train_state(init_fn(keys[n]), opt), batch)
        _close(jax.tree.map(lambda a, n=n: a[n], new.params), lone.params)
        np.testing.assert_allclose(metrics["loss"][n], m["loss"], rtol=1e-6)


def test_errors():
    opt = optax.adam(1e-3)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"`init_ensemble`: `keys` must be a 1-D array of PRNG"):
        init_ensemble(init_fn, opt, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"hyperparameter `learning_rate` must be an array of sh"):
        init_ensemble(init_fn, opt, keys, learning_rate=jnp.ones(3))
    with pytest.raises(ValueError, match=r"the optimizer injects no hyperparameter \['learning_"):
        init_ensemble(init_fn, opt, keys, learning_rate=jnp.ones(2))
    with pytest.raises(TypeError, match=r"`optimizer` must be an optax.GradientTransformation"):
        init_ensemble(init_fn, "adam", keys)
    states = init_ensemble(init_fn, opt, keys)
    with pytest.raises(ValueError, match=r"`train_ensemble`: `num_steps` must be a positive int"):
        train_ensemble(loss_fn, opt, states, batch_fn, 0, jax.random.key(0))
    with pytest.raises(TypeError, match=r"`states` must be a TrainState"):
        train_ensemble(loss_fn, opt, states.params, batch_fn, 1, jax.random.key(0))
