"""``parallel_scan``: the mLSTM's parallel and chunkwise forms equal to ``scan`` (outputs, final
carry, reverse- and forward-mode derivatives) with lengths, a given carry, time-major input, jit
and vmap; clear errors."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FLOAT, RTOL, assert_close, randomize

import lstm_jax as lj

TOL = {"rtol": max(RTOL, 2e-5), "atol": 1e-5 if FLOAT == jnp.float32 else 1e-10}


def _setup(head_norm=False, output_gate=True, forget="sigmoid", T=13, B=3):
    cell = lj.mLSTMCell(
        8,
        num_heads=2,
        head_norm=head_norm,
        output_gate=output_gate,
        forget_gate=forget,
        param_dtype=FLOAT,
    )
    params = randomize(cell.init(jax.random.key(0), 5), jax.random.key(1), scale=0.4)
    xs = jax.random.normal(jax.random.key(2), (B, T, 5), FLOAT)
    return cell, params, xs


@pytest.mark.x64
@pytest.mark.parametrize("chunk_size", [None, 1, 4, 5, 13, 64])
@pytest.mark.parametrize(
    "options",
    [{}, {"head_norm": True, "output_gate": False}, {"forget": "exp"}],
    ids=["default", "xlstm_cell", "exp_forget"],
)
def test_forms_equal_scan(chunk_size, options):
    cell, params, xs = _setup(**options)
    c_s, y_s = lj.scan(cell, params, xs)
    c_p, y_p = lj.parallel_scan(cell, params, xs, chunk_size=chunk_size)
    assert_close(y_p, y_s, **TOL)
    assert_close(c_p.m, c_s.m, **TOL)
    assert_close(c_p.c, c_s.c, **TOL)
    assert_close(c_p.n, c_s.n, **TOL)


@pytest.mark.x64
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_lengths_given_carry_and_time_major(chunk_size):
    cell, params, xs = _setup(T=11, B=4)
    carry0, _ = lj.scan(cell, params, xs[:, :3])  # a nonzero starting state
    lengths = jnp.array([11, 6, 1, 0])
    xs_tm = jnp.swapaxes(xs, 0, 1).at[7:, 1].set(jnp.nan)  # NaN padding must not leak
    c_s, y_s = lj.scan(cell, params, xs_tm, carry0, lengths=lengths, time_major=True)
    c_p, y_p = lj.parallel_scan(
        cell, params, xs_tm, carry0, lengths=lengths, time_major=True, chunk_size=chunk_size
    )
    assert y_p.shape == (11, 4, 8)
    assert_close(y_p, y_s, **TOL)
    for a, b in zip(jax.tree.leaves(c_p), jax.tree.leaves(c_s), strict=True):
        assert_close(a, b, **TOL)
    np.testing.assert_array_equal(y_p[6:, 1], 0.0)
    assert_close(c_p.c[3], carry0.c[3], **TOL)  # zero length: the carry passes through


@pytest.mark.x64
@pytest.mark.parametrize(
    "make",
    [
        lambda: _setup(T=11, B=4)[0],
        lambda: lj.minLSTMCell(8, param_dtype=FLOAT),
        lambda: lj.minGRUCell(8, param_dtype=FLOAT),
    ],
    ids=["mlstm", "minlstm", "mingru"],
)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_reverse_equals_scans_reverse(make, with_lengths):
    """``reverse=True`` reads each sequence from its last valid step back, as ``scan`` does:
    outputs in input order, zeros on the padding, the carry after the first step, gradients."""
    cell = make()
    params = randomize(cell.init(jax.random.key(0), 5), jax.random.key(1), scale=0.4)
    xs = jax.random.normal(jax.random.key(2), (4, 11, 5), FLOAT)
    carry0, _ = lj.scan(cell, params, xs[:, :3])  # a nonzero starting state
    lengths = jnp.array([11, 6, 1, 0]) if with_lengths else None
    w = jax.random.normal(jax.random.key(5), (4, 11, 8), FLOAT)

    def run(fn):
        def loss(p, x):
            c, ys = fn(cell, p, x, carry0, lengths=lengths, reverse=True)
            return jnp.sum(ys * w) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(c)), (c, ys)

        (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, xs)
        return out, grads

    got = run(functools.partial(lj.parallel_scan, chunk_size=4))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(run(lj.scan)), strict=True):
        assert_close(a, b, **TOL)
    if with_lengths:
        np.testing.assert_array_equal(got[0][1][1, 6:], 0.0)


@pytest.mark.x64
def test_gradients_of_every_form_agree():
    cell, params, xs = _setup(T=10, B=2)
    w = jax.random.normal(jax.random.key(5), (2, 10, 8), FLOAT)

    def loss(run):
        return jax.grad(lambda p, x: jnp.sum(run(p, x)[1] * w), argnums=(0, 1))(params, xs)

    def tangent(run):  # forward mode: one jvp along random directions of params and inputs
        dirs = randomize((params, xs), jax.random.key(6), scale=1.0)
        return jax.jvp(lambda p, x: jnp.sum(run(p, x)[1] * w), (params, xs), dirs)[1]

    want = loss(lambda p, x: lj.scan(cell, p, x))
    want_t = tangent(lambda p, x: lj.scan(cell, p, x))
    # None: one chunk of the default length at T = 10, the parallel form; 3 and 4: chunkwise,
    # 4 with a partial last chunk
    for L in (None, 3, 4):
        run = functools.partial(_parallel, cell, chunk_size=L)
        for a, b in zip(jax.tree.leaves(loss(run)), jax.tree.leaves(want), strict=True):
            assert_close(a, b, rtol=TOL["rtol"] * 10, atol=TOL["atol"] * 10)
        assert_close(tangent(run), want_t, rtol=TOL["rtol"] * 10, atol=TOL["atol"] * 10)


def _parallel(cell, params, xs, chunk_size):
    return lj.parallel_scan(cell, params, xs, chunk_size=chunk_size)


def test_jit_and_vmap_agree():
    cell, params, xs = _setup(T=9, B=3)
    _, ys = lj.parallel_scan(cell, params, xs, chunk_size=4)
    run = jax.jit(lambda p, x: lj.parallel_scan(cell, p, x, chunk_size=4))
    _, ys_jit = run(params, xs)
    _, ys_vmap = jax.vmap(lambda x: lj.parallel_scan(cell, params, x, chunk_size=4))(xs)
    assert_close(ys_jit, ys, **TOL)
    assert_close(ys_vmap, ys, **TOL)


@pytest.mark.slow
def test_chunkwise_is_stable_at_ten_thousand_steps():
    cell = lj.mLSTMCell(8, num_heads=2, forget_gate="exp")
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1), scale=1.0)
    xs = 3.0 * jax.random.normal(jax.random.key(2), (1, 10_000, 3))

    def loss(p, x):
        return jnp.sum(lj.parallel_scan(cell, p, x, chunk_size=128)[1] ** 2)

    value, grads = jax.value_and_grad(loss, argnums=(0, 1))(params, xs)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_clear_errors():
    lstm = lj.LSTMCell(4)
    with pytest.raises(
        TypeError, match=r"parallel_scan.*cell.*parallel form.*LSTMCell.*lstm_jax.scan"
    ):
        lj.parallel_scan(lstm, lstm.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))
    s = lj.sLSTMCell(4)
    with pytest.raises(TypeError, match=r"parallel_scan.*got sLSTMCell"):
        lj.parallel_scan(s, s.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))
    cell, params, xs = _setup()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"parallel_scan.*chunk_size.*positive int"):
            lj.parallel_scan(cell, params, xs, chunk_size=bad)
    with pytest.raises(ValueError, match=r"parallel_scan.*lengths.*\[0, T=13\]"):
        lj.parallel_scan(cell, params, xs, lengths=jnp.array([3, 14, 0]))
    with pytest.raises(ValueError, match=r"parallel_scan.*has 4 features"):
        lj.parallel_scan(cell, params, xs[..., :4])
    cell64 = dataclasses.replace(cell, num_heads=4)
    with pytest.raises(ValueError, match=r"parallel_scan.*params"):
        lj.parallel_scan(cell64, params, xs)
