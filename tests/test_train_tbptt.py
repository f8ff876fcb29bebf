"""Truncated BPTT: chunked stateful forward == one long scan; resets; training on a stream."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lstm_jax as lj
from lstm_jax.training.tbptt import fit_tbptt, make_tbptt_step, reset_carry, stream_chunks

RNN = lj.LSTM(6, num_layers=2)
APPLY = jax.jit(RNN.apply)


def chunked_forward(params, xs, K, starts=None):
    carry, outs = RNN.initial_carry((xs.shape[0],)), []
    for chunk, reset in stream_chunks(xs, K, starts):
        carry, ys = APPLY(params, chunk, reset_carry(carry, jnp.asarray(reset)))
        outs.append(ys)
    return jnp.concatenate(outs, axis=1), carry


@pytest.mark.parametrize("K", [1, 7, 40])
def test_chunked_forward_equals_one_long_scan(K):
    xs = jax.random.normal(jax.random.key(0), (3, 40, 2))
    params = RNN.init(jax.random.key(1), 2)
    want_carry, want = RNN.apply(params, xs)
    got, got_carry = chunked_forward(params, xs, K)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(got_carry), jax.tree.leaves(want_carry), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_reset_at_a_sequence_start_equals_a_fresh_scan():
    xs = jax.random.normal(jax.random.key(0), (2, 20, 2))
    params = RNN.init(jax.random.key(1), 2)
    starts = np.zeros((2, 20), bool)
    starts[1, 10] = True  # row 1 holds two sequences, [0, 10) and [10, 20)
    got, _ = chunked_forward(params, xs, 5, starts)
    _, fresh = RNN.apply(params, xs[1:, 10:])
    np.testing.assert_allclose(got[1:, 10:], fresh, rtol=1e-5, atol=1e-6)
    _, whole = RNN.apply(params, xs[:1])
    np.testing.assert_allclose(got[:1], whole, rtol=1e-5, atol=1e-6)


def test_sequence_starts_must_sit_on_chunk_boundaries():
    starts = np.zeros((2, 20), bool)
    starts[0, 3] = True
    with pytest.raises(ValueError, match=r"`starts` must be a \(2, 20\) bool array whose True"):
        stream_chunks(np.zeros((2, 20, 1), np.float32), 5, starts)


def test_tbptt_step_gradient_and_carry():
    head = lj.Dense(1)
    params = (RNN.init(jax.random.key(1), 2), head.init(jax.random.key(2), 6))

    def loss_fn(params, carry, chunk):
        xs, ys = chunk
        carry, hs = RNN.apply(params[0], xs, carry)
        return jnp.mean(jnp.square(head.apply(params[1], hs) - ys)), carry

    opt = optax.sgd(0.1)
    xs = jax.random.normal(jax.random.key(0), (2, 8, 2))
    ys = jnp.zeros((2, 8, 1))
    carry = RNN.initial_carry((2,))
    state, carry1, m = jax.jit(make_tbptt_step(loss_fn, opt))(
        lj.init_train_state(params, opt), carry, (xs, ys), np.ones(2, bool)
    )
    want = jax.jit(jax.grad(lambda p: loss_fn(p, carry, (xs, ys))[0]))(params)
    np.testing.assert_allclose(m["grad_norm"], optax.tree.norm(want), rtol=1e-5)
    want_carry, _ = APPLY(params[0], xs)
    np.testing.assert_allclose(carry1[1].forward.h, want_carry[1].forward.h, rtol=1e-6)
    assert int(state.step) == 1


@pytest.mark.slow
def test_fit_tbptt_learns_a_stream():
    T = 600
    wave = np.sin(2 * np.pi * np.arange(T + 1) / 16.0).astype(np.float32)
    xs = np.stack([wave[:-1], -wave[:-1]])[..., None]  # (2, T, 1)
    ys = np.stack([wave[1:], -wave[1:]])[..., None]
    head = lj.Dense(1)
    params = (RNN.init(jax.random.key(1), 1), head.init(jax.random.key(2), 6))

    def loss_fn(params, carry, chunk):
        x, y = chunk
        carry, hs = RNN.apply(params[0], x, carry)
        return jnp.mean(jnp.square(head.apply(params[1], hs) - y)), carry

    result = fit_tbptt(loss_fn, params, (xs, ys), RNN.initial_carry((2,)), chunk_length=25,
                       optimizer=optax.adam(1e-2), epochs=4)  # fmt: skip
    assert result.history["step"] == [24, 48, 72, 96]
    assert result.history["loss"][-1] < 0.1 * result.history["loss"][0]
