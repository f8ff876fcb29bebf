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
    result = lj.fit(loss_fn, params, (xs, ys), epochs=6, batch_size=32,
                    config=lj.FitConfig(val_fraction=0.25), optimizer=optax.adam(2e-2))  # fmt: skip
    hist = result.history
    assert hist["loss"][-1] < 0.2 * hist["loss"][0]
    assert min(hist["val_loss"]) < 0.2 * float(np.var(ys))  # predicting the mean scores var(ys)
    assert hist["epoch"] == list(range(1, 7)) and hist["step"][-1] == 6 * 9  # 288 training windows


def run_linear(tmp_path=None, *, resume=False, save_every=None, config=(), **kwargs):
    params = HEAD.init(jax.random.key(0), 3)
    kwargs.setdefault("optimizer", optax.adam(1e-2))
    ck = None
    if tmp_path is not None:
        ck = lj.Checkpointing(tmp_path / "run.ckpt", resume=resume, save_every=save_every)
    cfg = lj.FitConfig(val_fraction=0.2, **dict(config))
    return lj.fit(linear_loss, params, linear_data(), batch_size=10, config=cfg, checkpoint=ck,
                  **kwargs)  # fmt: skip


def same_history(a, b):
    drop = {"time_s"}
    return {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop
    }


def test_resume_mid_epoch_is_bit_for_bit(tmp_path):
    full = run_linear(epochs=4)
    part = run_linear(
        tmp_path, epochs=4, config={"max_steps": 13}
    )  # stops inside epoch 2 (8 steps/epoch)
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
    a, b = run_linear(epochs=2, config={"seed": 1}), run_linear(epochs=2, config={"seed": 1})
    c = run_linear(epochs=2)
    np.testing.assert_array_equal(a.state.params.w, b.state.params.w)
    assert not np.array_equal(a.state.params.w, c.state.params.w)


def test_early_stopping_keeps_the_best_epoch():
    result = run_linear(epochs=10, callbacks=[lj.EarlyStopping(2)], optimizer=optax.sgd(0.0))
    assert result.stopped_early and result.best_epoch == 1
    assert len(result.history["epoch"]) == 3


def test_clip_norm_bounds_each_update():
    x, y = linear_data()
    params = HEAD.init(jax.random.key(0), 3)
    cfg = lj.FitConfig(shuffle=False, clip_norm=0.01)
    result = lj.fit(linear_loss, params, (x, y), epochs=1, batch_size=96, config=cfg,
                    optimizer=optax.sgd(1.0))  # fmt: skip
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


def test_a_keyed_loss_trains_with_its_key_and_validates_without_it():
    """With ``key``, training calls ``loss_fn(params, batch, key)`` and validation
    ``loss_fn(params, batch)``: a key with a default serves both (dropout off when None), and a
    loss whose key has no default still trains when there is nothing to validate."""
    calls = []

    def loss_fn(params, batch, key=None):
        calls.append(key is None)
        scale = 1.0 if key is None else 1.0 + 0.0 * jax.random.normal(key, ())
        return scale * linear_loss(params, batch)

    x, y = linear_data()
    params = HEAD.init(jax.random.key(0), 3)
    cfg = lj.FitConfig(val_fraction=0.25)
    result = lj.fit(loss_fn, params, (x, y), epochs=2, key=jax.random.key(1), config=cfg)
    assert result.history["val_loss"][-1] < result.history["val_loss"][0]
    assert set(calls) == {True, False}  # traced once for training, once for validation

    def needs_key(params, batch, key):
        return linear_loss(params, batch)

    result = lj.fit(needs_key, params, (x, y), epochs=1, key=jax.random.key(1))
    assert np.isfinite(result.history["loss"][-1])


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


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = linear_data()
    y[45] = np.nan  # example 45 is in batch 5 of epoch 1 without shuffling (10 per batch)

    def run(ck):
        return lj.fit(linear_loss, HEAD.init(jax.random.key(0), 3), (x, y), epochs=3,
                      batch_size=10, config=lj.FitConfig(shuffle=False), checkpoint=ck)  # fmt: skip

    path = tmp_path / "run.ckpt"
    msg = (r"not finite \(NaN or inf\) at step 5; training stopped\. The checkpoint "
           r".*run\.ckpt holds the last good state \(step 3\)")  # fmt: skip
    with pytest.raises(FloatingPointError, match=msg):
        run(lj.Checkpointing(path, save_every=3))
    kept = lj.checkpoint.load_checkpoint(path, run_template())
    assert int(kept.tree["state"].step) == 3 and kept.meta["batch"] == 3
    assert np.isfinite(np.asarray(kept.tree["state"].params.w)).all()


def run_template():
    from lstm_jax.training.fit import checkpoint_template

    return checkpoint_template(HEAD.init(jax.random.key(0), 3), optax.adam(1e-3))


def test_best_epoch_is_set_whenever_validating():
    result = run_linear(epochs=3, optimizer=optax.sgd(0.0))  # a constant validation loss
    assert result.best_epoch == 1 and len(result.history["val_loss"]) == 3


class Recorder(lj.Callback):
    def __init__(self, stop_at_step=None):
        self.calls, self.stop_at_step = [], stop_at_step

    def on_train_begin(self, info):
        self.calls.append(("begin", info.total_steps, info.initial_step, info.validating))

    def on_step_end(self, step, metrics):
        self.calls.append(("step", step, round(float(metrics["loss"]), 6)))
        return step == self.stop_at_step

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch", epoch, logs["step"], round(logs["val_loss"], 6)))

    def on_train_end(self, history):
        self.calls.append(("end", len(history["epoch"])))


def test_callbacks_see_every_step_and_epoch_in_order():
    rec = Recorder()
    result = run_linear(epochs=2, callbacks=[rec])
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["begin"] + (["step"] * 8 + ["epoch"]) * 2 + ["end"]
    assert rec.calls[0] == ("begin", 16, 0, True)
    assert [c[1] for c in rec.calls if c[0] == "step"] == list(range(1, 17))
    epochs = [c for c in rec.calls if c[0] == "epoch"]
    assert [e[2] for e in epochs] == result.history["step"] == [8, 16]
    assert [e[3] for e in epochs] == [round(v, 6) for v in result.history["val_loss"]]


def test_a_step_callback_stops_the_run_and_saves(tmp_path):
    rec = Recorder(stop_at_step=5)
    part = run_linear(tmp_path, epochs=4, callbacks=[rec])
    assert part.stopped_early and int(part.state.step) == 5 and rec.calls[-1] == ("end", 0)
    saved = lj.checkpoint.read_checkpoint_info(tmp_path / "run.ckpt")[1]
    assert saved["batch"] == 5 and saved["stopped_early"]


def test_early_stopping_resumed_stops_where_the_whole_run_stops(tmp_path):
    # a learning rate that makes the validation loss rise after a few epochs
    kw = {"optimizer": optax.sgd(0.6), "epochs": 12}
    whole = run_linear(callbacks=[lj.EarlyStopping(2, min_delta=1e-3)], **kw)
    assert whole.stopped_early and len(whole.history["epoch"]) < 12
    stop = [lj.EarlyStopping(2, min_delta=1e-3)]
    run_linear(tmp_path, config={"max_steps": 8 * 2}, callbacks=stop, **kw)
    resumed = run_linear(tmp_path, resume=True, callbacks=stop, **kw)
    assert same_history(whole.history, resumed.history) and resumed.stopped_early
    assert resumed.best_epoch == whole.best_epoch


def read_events(logdir):
    """Scalars of tensorboardX event files, read with its protobuf classes (TFRecord framing:
    length, CRC, data, CRC)."""
    import struct

    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(logdir.iterdir()):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_writes_step_and_epoch_scalars(tmp_path):
    rec = Recorder()
    result = run_linear(epochs=2, callbacks=[rec, lj.TensorBoard(tmp_path / "tb", every=4)])
    events = read_events(tmp_path / "tb")
    assert [s for s, _ in events["train/loss"]] == [4, 8, 12, 16]
    want = {c[1]: c[2] for c in rec.calls if c[0] == "step"}
    np.testing.assert_allclose([v for _, v in events["train/loss"]],
                               [want[s] for s in (4, 8, 12, 16)], rtol=1e-5)  # fmt: skip
    assert [s for s, _ in events["epoch/val_loss"]] == [1, 2]
    np.testing.assert_allclose([v for _, v in events["epoch/val_loss"]],
                               result.history["val_loss"], rtol=1e-6)  # fmt: skip
    assert "train/grad_norm" in events and "epoch/loss" in events and "epoch/time_s" not in events


def test_fit_tbptt_calls_callbacks_per_chunk():
    def loss_fn(w, carry, chunk):
        x, y = chunk
        return jnp.mean(jnp.square(HEAD.apply(w, x) - y)), carry

    x, y = linear_data(24)
    stream = (x.reshape(2, 12, 3), y.reshape(2, 12, 1))  # (B=2, N=12, ...)
    rec = Recorder(stop_at_step=None)
    rec.on_epoch_end = lambda epoch, logs: rec.calls.append(("epoch", epoch, logs["step"]))
    result = lj.fit_tbptt(loss_fn, HEAD.init(jax.random.key(0), 3), stream, (), chunk_length=4,
                          epochs=2, optimizer=optax.sgd(0.1), callbacks=[rec])  # fmt: skip
    assert [c[:3] for c in rec.calls if c[0] == "epoch"] == [("epoch", 1, 3), ("epoch", 2, 6)]
    assert [c[1] for c in rec.calls if c[0] == "step"] == [1, 2, 3, 4, 5, 6]
    assert result.history["step"] == [3, 6]


@pytest.mark.slow
@pytest.mark.loose_promotion  # optax.adam's update mixes a Python float with its int32 count
def test_the_readme_block_of_grouped_options_and_callbacks(tmp_path, monkeypatch):
    from test_readme import block, run

    monkeypatch.chdir(tmp_path)  # the block writes runs/elnino.ckpt and runs/tb
    keras = block("import jax, jax.numpy as jnp, optax", 1).replace("epochs=40", "epochs=1")
    ns = run(keras)
    ns["train"], ns["val"] = [tuple(a[:64] for a in ns[k]) for k in ("train", "val")]  # quicker
    code = block("result = lj.fit(\n    mse, params, train").replace("epochs=40", "epochs=3")
    first = run(code, **ns)["result"]
    assert first.history["epoch"] == [1, 2, 3] and (tmp_path / "runs/elnino.ckpt").is_file()
    assert len(read_events(tmp_path / "runs/tb")["epoch/val_loss"]) == 3
    again = run(code.replace("epochs=3", "epochs=4"), **ns)["result"]  # resumes at epoch 3
    assert again.history["epoch"] == [1, 2, 3, 4]
    assert again.history["loss"][:3] == first.history["loss"]


@pytest.mark.x64
def test_fit_keeps_the_params_dtype_through_training_and_resume(tmp_path):
    from conftest import X64

    dtype = jnp.float64 if X64 else jnp.float32
    x, y = (a.astype(dtype) for a in linear_data(40))
    w = jnp.zeros((3, 1), dtype)

    def loss_fn(w, batch):
        return jnp.mean(jnp.square(batch[0] @ w - batch[1]))

    def run(epochs, resume):
        ck = lj.Checkpointing(tmp_path / "c", resume=resume)
        return lj.fit(loss_fn, w, (x, y), epochs=epochs, batch_size=8,
                      optimizer=optax.sgd(0.05), checkpoint=ck)  # fmt: skip

    first = run(2, False)
    resumed, whole = run(4, True), lj.fit(loss_fn, w, (x, y), epochs=4, batch_size=8,
                                          optimizer=optax.sgd(0.05))  # fmt: skip
    assert first.params.dtype == resumed.params.dtype == dtype
    np.testing.assert_array_equal(resumed.params, whole.params)
    assert resumed.history["loss"][-1] < 0.5 * resumed.history["loss"][0]


def test_a_callback_stops_fit_tbptt_mid_epoch():
    def loss_fn(w, carry, chunk):
        x, y = chunk
        return jnp.mean(jnp.square(HEAD.apply(w, x) - y)), carry

    x, y = linear_data(24)
    rec = Recorder(stop_at_step=2)
    rec.on_epoch_end = lambda epoch, logs: None
    result = lj.fit_tbptt(loss_fn, HEAD.init(jax.random.key(0), 3),
                          (x.reshape(2, 12, 3), y.reshape(2, 12, 1)), (), chunk_length=4,
                          epochs=2, optimizer=optax.sgd(0.1), callbacks=[rec])  # fmt: skip
    steps = [c for c in rec.calls if c[0] == "step"]
    assert result.stopped_early and result.history["step"] == [2] and len(steps) == 2
    np.testing.assert_allclose(result.history["loss"], [(steps[0][2] + steps[1][2]) / 2], rtol=1e-5)


def test_fit_tbptt_gives_the_loss_a_new_key_every_chunk():
    def loss_fn(w, carry, chunk, key):  # the loss is the key's draw (plus 0 * params)
        return jax.random.normal(key, ()) + 0.0 * jnp.sum(w.w), carry

    class Losses(lj.Callback):
        def __init__(self):
            self.seen = []

        def on_step_end(self, step, metrics):
            self.seen.append(float(metrics["loss"]))

    runs = []
    for seed in (0, 0, 1):
        rec = Losses()
        lj.fit_tbptt(loss_fn, HEAD.init(jax.random.key(0), 3), np.ones((2, 12, 3), np.float32),
                     (), chunk_length=4, epochs=2, optimizer=optax.sgd(0.0),
                     key=jax.random.key(seed), callbacks=[rec])  # fmt: skip
        runs.append(rec.seen)
    assert len(set(runs[0])) == 6  # a new key for every chunk of every epoch
    assert runs[0] == runs[1] and runs[0] != runs[2]  # a function of the key and the step
