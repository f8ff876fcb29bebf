"""The training step and loop: loss decreases, exact resume, early stopping, clipping, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lstm_jax as lj
from lstm_jax.data import sliding_windows, synthetic_series

HEAD = lj.Dense(1)


def linear_loss(params, batch):
    x, y = batch
    return jnp.mean(jnp.square(HEAD.apply(params, x) - y))


def linear_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    return x, y


def test_train_step_matches_manual_sgd():
    x, y = linear_data(8)
    params = HEAD.init(jax.random.key(0), 3)
    opt = optax.sgd(0.1)
    state, metrics = lj.make_train_step(linear_loss, opt)(lj.init_train_state(params, opt), (x, y))
    grads = jax.grad(linear_loss)(params, (x, y))
    np.testing.assert_allclose(state.params.w, params.w - 0.1 * grads.w, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], linear_loss(params, (x, y)), rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-6)
    assert int(state.step) == 1


def test_train_step_vmaps_over_seeds():
    x, y = linear_data(16)
    opt = optax.adam(1e-2)
    keys = jax.random.split(jax.random.key(0), 4)
    states = jax.vmap(lambda k: lj.init_train_state(HEAD.init(k, 3), opt))(keys)
    step = jax.jit(jax.vmap(lj.make_train_step(linear_loss, opt), in_axes=(0, None)))
    states, metrics = step(states, (x, y))
    assert metrics["loss"].shape == (4,)
    one, _ = lj.make_train_step(linear_loss, opt)(
        lj.init_train_state(HEAD.init(keys[2], 3), opt), (x, y)
    )
    np.testing.assert_allclose(states.params.w[2], one.params.w, rtol=1e-6)


def test_eval_step_passes_metrics_through():
    def loss_fn(params, batch):
        loss = linear_loss(params, batch)
        return loss, {"rmse": jnp.sqrt(loss)}

    params = HEAD.init(jax.random.key(0), 3)
    m = lj.make_eval_step(loss_fn)(params, linear_data(8))
    np.testing.assert_allclose(m["rmse"] ** 2, m["loss"], rtol=1e-6)


@pytest.mark.slow
def test_fit_decreases_lstm_loss_on_sine_windows():
    rnn = lj.LSTM(8)
    params = (rnn.init(jax.random.key(0), 1), HEAD.init(jax.random.key(1), 8))

    def loss_fn(params, batch):
        xs, ys = batch
        _, hs = rnn.apply(params[0], xs)
        return jnp.mean(jnp.square(HEAD.apply(params[1], hs[:, -1]) - ys))

    xs, ys = sliding_windows(synthetic_series(0, 400, period=12.0, noise=0.05), 16)
    result = lj.fit(loss_fn, params, (xs, ys), epochs=6, batch_size=32, val_fraction=0.25,
                    optimizer=optax.adam(2e-2))  # fmt: skip
    hist = result.history
    assert hist["loss"][-1] < 0.2 * hist["loss"][0]
    assert min(hist["val_loss"]) < 0.2 * float(np.var(ys))  # predicting the mean scores var(ys)
    assert hist["epoch"] == list(range(1, 7)) and hist["step"][-1] == 6 * 9  # 288 training windows


def run_linear(tmp_path=None, **kwargs):
    params = HEAD.init(jax.random.key(0), 3)
    kwargs.setdefault("optimizer", optax.adam(1e-2))
    ckpt = None if tmp_path is None else tmp_path / "run.ckpt"
    return lj.fit(linear_loss, params, linear_data(), batch_size=10, val_fraction=0.2,
                  checkpoint=ckpt, **kwargs)  # fmt: skip


def same_history(a, b):
    drop = {"time_s"}
    return {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop
    }


def test_resume_mid_epoch_is_bit_for_bit(tmp_path):
    full = run_linear(epochs=4)
    part = run_linear(tmp_path, epochs=4, max_steps=13)  # stops inside epoch 2 (8 steps/epoch)
    assert int(part.state.step) == 13 and len(part.history["epoch"]) == 1
    resumed = run_linear(tmp_path, epochs=4, resume=True)
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert same_history(full.history, resumed.history)
    assert full.history["step"] == [8, 16, 24, 32]


def test_resume_after_finished_run_trains_further_epochs(tmp_path):
    run_linear(tmp_path, epochs=2)
    more = run_linear(tmp_path, epochs=3, resume=True)
    full = run_linear(epochs=3)
    assert same_history(full.history, more.history)
    np.testing.assert_array_equal(full.state.params.w, more.state.params.w)


def test_fit_is_deterministic_for_a_seed():
    a, b, c = run_linear(epochs=2, seed=1), run_linear(epochs=2, seed=1), run_linear(epochs=2)
    np.testing.assert_array_equal(a.state.params.w, b.state.params.w)
    assert not np.array_equal(a.state.params.w, c.state.params.w)


def test_early_stopping_keeps_the_best_epoch():
    result = run_linear(epochs=10, patience=2, optimizer=optax.sgd(0.0))
    assert result.stopped_early and result.best_epoch == 1
    assert len(result.history["epoch"]) == 3


def test_clip_norm_bounds_each_update():
    x, y = linear_data()
    params = HEAD.init(jax.random.key(0), 3)
    result = lj.fit(linear_loss, params, (x, y), epochs=1, batch_size=96, shuffle=False,
                    optimizer=optax.sgd(1.0), clip_norm=0.01)  # fmt: skip
    moved = optax.tree.norm(jax.tree.map(jnp.subtract, result.state.params, params))
    assert float(moved) == pytest.approx(0.01, rel=1e-4)


def test_schedule_is_recorded_with_inject_hyperparams():
    sched = optax.linear_schedule(1e-2, 0.0, 16)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=sched)
    result = run_linear(epochs=2, optimizer=opt)
    # the rate of the last step of each epoch
    np.testing.assert_allclose(result.history["lr"], [sched(7), sched(15)], rtol=1e-6)


def test_key_gives_a_new_key_every_step():
    seen = []

    def loss_fn(params, batch, key):
        noise = jax.random.normal(key, ())
        return linear_loss(params, batch) + 0.0 * noise, {"noise": noise}

    opt = optax.sgd(0.0)
    step = jax.jit(lj.make_train_step(loss_fn, opt, key=jax.random.key(0)))
    state = lj.init_train_state(HEAD.init(jax.random.key(0), 3), opt)
    for _ in range(3):
        state, m = step(state, linear_data(4))
        seen.append(float(m["noise"]))
    assert len(set(seen)) == 3


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"epochs": 0}, ValueError, r"`fit`: `epochs` must be a positive int; got 0"),
        ({"batch_size": 2.5}, ValueError, r"`batch_size` must be a positive int"),
        ({"resume": True}, ValueError, r"`resume=True` needs a `checkpoint`"),
        ({"patience": 2}, ValueError, r"early stopping \(`patience`\) needs `val_data`"),
        ({"val_fraction": 1.5}, ValueError, r"`val_fraction` must be in \(0, 1\); got 1.5"),
    ],
)
def test_fit_argument_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        lj.fit(linear_loss, HEAD.init(jax.random.key(0), 3), linear_data(), **kwargs)


def test_step_errors():
    params = HEAD.init(jax.random.key(0), 3)
    with pytest.raises(TypeError, match=r"`optimizer` must be an optax.GradientTransformation"):
        lj.init_train_state(params, "adam")
    with pytest.raises(TypeError, match=r"`make_train_step`: `optimizer` must be an optax"):
        lj.make_train_step(linear_loss, optax.adam)
    opt = optax.sgd(0.1)
    step = lj.make_train_step(lambda p, b: jnp.square(HEAD.apply(p, b[0]) - b[1]), opt)
    with pytest.raises(ValueError, match=r"must return a scalar loss \(shape \(\)\); got \(8, 1\)"):
        step(lj.init_train_state(params, opt), linear_data(8))
    with pytest.raises(ValueError, match=r"share the leading \(examples\) axis"):
        lj.fit(linear_loss, params, (np.zeros((4, 3), np.float32), np.zeros((5, 1), np.float32)))
