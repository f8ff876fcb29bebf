"""Dense head, additive attention pooling and the padded-sequence helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import randomize

import lstm_jax as lj


def test_dense_matches_numpy():
    head = lj.Dense(3)
    params = randomize(head.init(jax.random.key(0), 4), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (2, 5, 4))
    ref = np.asarray(x) @ np.asarray(params.w) + np.asarray(params.b)
    np.testing.assert_allclose(head.apply(params, x), ref, rtol=1e-5, atol=1e-6)


def test_attention_matches_numpy_and_ignores_padding():
    att = lj.AdditiveAttention(6)
    params = randomize(att.init(jax.random.key(0), 4), jax.random.key(1))
    hs = jax.random.normal(jax.random.key(2), (3, 5, 4))
    lengths = jnp.array([5, 2, 0])
    ctx, w = att.apply(params, hs, lengths)
    P = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    for b, n in enumerate([5, 2, 0]):
        h = np.asarray(hs[b, :n], np.float64)
        e = np.tanh(h @ P.w + P.b) @ P.v
        alpha = (
            np.exp(e - e.max(initial=0)) / np.exp(e - e.max(initial=0)).sum() if n else np.zeros(0)
        )
        np.testing.assert_allclose(w[b, :n], alpha, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(w[b, n:], 0.0)
        np.testing.assert_allclose(ctx[b], alpha @ h if n else np.zeros(4), rtol=1e-5, atol=1e-6)
    # Padding values never leak into the context.
    hs2 = hs.at[1, 2:].set(1e3)
    np.testing.assert_allclose(att.apply(params, hs2, lengths)[0], ctx, rtol=1e-6)


def test_last_step_picks_each_examples_last_valid_output():
    ys = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
    out = lj.last_step(ys, jnp.array([2, 0]))
    np.testing.assert_array_equal(out[0], ys[0, 1])
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(lj.last_step(ys), ys[:, -1])
    np.testing.assert_array_equal(
        lj.last_step(jnp.swapaxes(ys, 0, 1), jnp.array([2, 0]), time_major=True), out
    )


def test_last_step_equals_final_carry_h():
    rnn = lj.LSTM(4)
    params = rnn.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (3, 6, 2))
    lengths = jnp.array([6, 3, 1])
    carry, ys = rnn.apply(params, xs, lengths=lengths)
    np.testing.assert_allclose(lj.last_step(ys, lengths), carry[0].forward.h, rtol=1e-6)


def test_reverse_padded():
    xs = jnp.arange(8, dtype=jnp.float32).reshape(2, 4, 1)
    out = lj.reverse_padded(xs, jnp.array([4, 2]))
    np.testing.assert_array_equal(out[0, :, 0], [3, 2, 1, 0])
    np.testing.assert_array_equal(out[1, :, 0], [5, 4, 6, 7])
    np.testing.assert_array_equal(lj.reverse_padded(out, jnp.array([4, 2])), xs)


def test_dropout_statistics():
    x = jnp.ones((20000,))
    y = lj.dropout(jax.random.key(0), x, 0.25)
    assert abs(float(jnp.mean(y == 0)) - 0.25) < 0.02
    np.testing.assert_allclose(float(jnp.mean(y)), 1.0, atol=0.03)
    with pytest.raises(ValueError, match=r"`rate` must be (a finite number )?in \[0, 1\)"):
        lj.dropout(jax.random.key(0), x, 1.0)


@pytest.mark.x64
def test_attention_pooling_computes_in_the_promoted_dtype():
    att = lj.AdditiveAttention(4)
    params = att.init(jax.random.key(0), 3)  # float32
    hs = jax.random.normal(jax.random.key(1), (2, 5, 3), jnp.float32)
    ctx, w = att.apply(params, hs, jnp.array([5, 0]))
    assert ctx.dtype == w.dtype == jnp.float32
    np.testing.assert_array_equal(ctx[1], 0.0)  # length 0: a zero context, no NaN
    if jax.config.read("jax_enable_x64"):
        ctx64, w64 = att.apply(params, hs.astype(jnp.float64), jnp.array([5, 0]))
        assert ctx64.dtype == w64.dtype == jnp.float64
        P = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
        e = np.tanh(np.asarray(hs[0], np.float64) @ P.w + P.b) @ P.v
        alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        np.testing.assert_allclose(w64[0], alpha, rtol=1e-12)
