"""Stacked and bidirectional layers: composition, variable lengths, dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lstm_jax as lj


def _close(a, b, tol=1e-5):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=tol, atol=tol), a, b)


def test_stack_equals_manual_composition_of_scans():
    rnn = lj.LSTM(4, num_layers=2, bidirectional=True)
    params = rnn.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    carry, ys = rnn.apply(params, xs)
    h = xs
    for layer in params:
        c_f, y_f = lj.scan(rnn.cell, layer.forward, h)
        c_b, y_b = lj.scan(rnn.cell, layer.backward, h, reverse=True)
        h = jnp.concatenate([y_f, y_b], -1)
    _close(ys, h)
    _close(carry[-1], lj.LayerState(c_f, c_b))
    assert ys.shape == (2, 5, rnn.output_size) == (2, 5, 8)


@pytest.mark.parametrize("make", [lj.LSTM, lj.GRU, lj.SimpleRNN])
def test_bidirectional_with_lengths_equals_trimmed_sequences(make):
    rnn = make(3, num_layers=2, bidirectional=True)
    params = rnn.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (3, 6, 2))
    lengths = jnp.array([6, 4, 1])
    carry, ys = rnn.apply(params, xs, lengths=lengths)
    for b, n in enumerate([6, 4, 1]):
        carry_b, ys_b = rnn.apply(params, xs[b, :n])  # unbatched, trimmed
        _close(ys[b, :n], ys_b)
        np.testing.assert_array_equal(ys[b, n:], 0.0)
        _close(jax.tree.map(lambda a, b=b: a[b], carry), carry_b)


def test_backward_direction_reads_each_example_reversed_within_its_length():
    rnn = lj.LSTM(3, bidirectional=True)
    params = rnn.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 2))
    lengths = jnp.array([5, 3])
    _, ys = rnn.apply(params, xs, lengths=lengths)
    flipped = lj.reverse_padded(xs, lengths)
    _, y_fwd_on_flipped = lj.scan(rnn.cell, params[0].backward, flipped, lengths=lengths)
    _close(ys[..., 3:], lj.reverse_padded(y_fwd_on_flipped, lengths))


def test_dropout_only_with_key_and_between_layers():
    rnn = lj.LSTM(8, num_layers=2, dropout=0.5)
    params = rnn.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (4, 6, 3))
    _, no_key_1 = rnn.apply(params, xs)
    _, no_key_2 = lj.LSTM(8, num_layers=2).apply(params, xs)
    _close(no_key_1, no_key_2)  # no key: deterministic, dropout off
    _, a = rnn.apply(params, xs, key=jax.random.key(2))
    _, b = rnn.apply(params, xs, key=jax.random.key(2))
    _, c = rnn.apply(params, xs, key=jax.random.key(3))
    _close(a, b)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-3
    # A one-layer stack has no "between layers": dropout changes nothing.
    one = lj.LSTM(8, dropout=0.5)
    p1 = one.init(jax.random.key(0), 3)
    _close(one.apply(p1, xs, key=jax.random.key(4))[1], one.apply(p1, xs)[1])


def test_recurrent_dropout_is_one_mask_per_sequence():
    rnn = lj.LSTM(6, recurrent_dropout=0.5)
    params = rnn.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (3, 5, 2))
    key = jax.random.key(7)
    _, ys = rnn.apply(params, xs, key=key)
    # Rebuild the mask the layer draws and run the cell by hand with it.
    _, k_f, _ = jax.random.split(jax.random.split(key, 1)[0], 3)
    mask = jax.random.bernoulli(k_f, 0.5, (3, 6)).astype(jnp.float32) / 0.5
    _, ref = lj.scan(rnn.cell, params[0].forward, xs, recurrent_mask=mask)
    _close(ys, ref)
    assert float(jnp.max(jnp.abs(ys - rnn.apply(params, xs)[1]))) > 1e-3


def test_gru_stack_carries_arrays():
    rnn = lj.GRU(5, num_layers=3)
    params = rnn.init(jax.random.key(0), 2)
    carry, ys = rnn.apply(params, jnp.ones((4, 7, 2)))
    assert ys.shape == (4, 7, 5) and len(carry) == 3 and carry[2].forward.shape == (4, 5)
    _close(carry[2].forward, ys[:, -1])


def test_time_major_stack():
    rnn_b, rnn_t = lj.LSTM(4, num_layers=2), lj.LSTM(4, num_layers=2, time_major=True)
    params = rnn_b.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    lengths = jnp.array([5, 2])
    cb, yb = rnn_b.apply(params, xs, lengths=lengths)
    ct, yt = rnn_t.apply(params, jnp.swapaxes(xs, 0, 1), lengths=lengths)
    _close(yb, jnp.swapaxes(yt, 0, 1))
    _close(cb, ct)


@pytest.mark.loose_promotion  # optax's adam mixes int and float step counts
def test_seed_keras_model_trains_in_a_few_lines():
    # Keras: Sequential([LSTM(50, input_shape=(100, 1)), Dense(1)]); compile(adam, mse).
    lstm, head = lj.LSTM(50), lj.Dense(1)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"lstm": lstm.init(k1, 1), "head": head.init(k2, 50)}

    def model(params, x):  # x: (B, 100, 1) -> (B, 1)
        _, ys = lstm.apply(params["lstm"], x)
        return head.apply(params["head"], ys[:, -1])

    t = jnp.linspace(0, 8 * jnp.pi, 400)
    series = jnp.sin(t) + 0.1 * jax.random.normal(k3, t.shape)
    idx = jnp.arange(64)[:, None] + jnp.arange(101)[None]  # (64, 101) window indices
    windows = series[idx]
    x, y = windows[:, :100, None], windows[:, 100:]

    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((model(p, x) - y) ** 2))(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(30):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
