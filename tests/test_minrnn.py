"""minLSTM and minGRU: a float64 NumPy loop of Feng et al. (2024)'s equations (the plain ratio
f / (f + i), not the log-space form the cells use), the parallel log-space scan equal to the
sequential one, lengths, grads and T = 10,000 stability."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FLOAT, X64, assert_close, randomize
from jax.test_util import check_grads

import lstm_jax as lj

CELLS = [lj.minLSTMCell(6), lj.minGRUCell(6)]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _g(z):
    return np.where(z >= 0, z + 0.5, _sigmoid(z))


def reference(cell, params, xs, h0):
    """``xs: (T, I)``, ``h0: (H,)`` -> ``(T, H)`` by the equations, in float64."""
    z = np.asarray(xs, np.float64) @ np.asarray(params.w_x, np.float64) + np.asarray(params.b)
    h, ys = np.asarray(h0, np.float64), []
    for zt in z:
        if isinstance(cell, lj.minLSTMCell):
            f_, i_, h_ = np.split(zt, 3)
            f, i = _sigmoid(f_), _sigmoid(i_)
            h = f / (f + i) * h + i / (f + i) * _g(h_)
        else:
            z_, h_ = np.split(zt, 2)
            zg = _sigmoid(z_)
            h = (1 - zg) * h + zg * _g(h_)
        ys.append(h)
    return np.stack(ys)


@pytest.mark.x64
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)], ids=str)
def test_both_modes_match_numpy(cell, batch):
    cell = dataclasses.replace(cell, param_dtype=FLOAT)
    params = randomize(cell.init(jax.random.key(0), 4), jax.random.key(1), scale=1.0)
    xs = jax.random.normal(jax.random.key(2), (*batch, 11, 4), FLOAT)
    h0 = jax.random.normal(jax.random.key(3), (*batch, 6), FLOAT)  # negative entries too
    _, ys = lj.scan(cell, params, xs, h0)
    h_p, ys_p = lj.parallel_scan(cell, params, xs, h0)  # one chunk (11 < 16)
    h_c, ys_c = lj.parallel_scan(cell, params, xs, h0, chunk_size=4)  # 3 chunks, the last short
    flat_x, flat_h0 = xs.reshape(-1, 11, 4), h0.reshape(-1, 6)
    for e in range(flat_x.shape[0]):
        want = reference(cell, params, flat_x[e], flat_h0[e])
        assert_close(ys.reshape(-1, 11, 6)[e], want)
        assert_close(ys_p.reshape(-1, 11, 6)[e], want)
        assert_close(ys_c.reshape(-1, 11, 6)[e], want)
    assert_close(h_p, ys[..., -1, :])
    assert_close(h_c, ys[..., -1, :])


@pytest.mark.parametrize("chunk_size", [None, 2, 4, 100])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: type(c).__name__)
def test_lengths_and_time_major_agree_with_scan(cell, chunk_size):
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (9, 4, 3))  # time-major (T, B, I)
    lengths = jnp.array([9, 5, 1, 0])
    xs = xs.at[6:, 1].set(jnp.nan)  # padding must not reach the outputs
    c_s, y_s = lj.scan(cell, params, xs, lengths=lengths, time_major=True)
    c_p, y_p = lj.parallel_scan(
        cell, params, xs, lengths=lengths, time_major=True, chunk_size=chunk_size
    )
    assert y_p.shape == (9, 4, 6)
    assert_close(y_p, y_s, rtol=1e-5, atol=1e-6)
    assert_close(c_p, c_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y_p[5:, 1], 0.0)
    np.testing.assert_array_equal(c_p[3], 0.0)


@pytest.mark.x64
@pytest.mark.skipif(not X64, reason="finite differences need float64")
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: type(c).__name__)
def test_parallel_gradients_match_finite_differences_and_scan(cell):
    cell = dataclasses.replace(cell, param_dtype=FLOAT)
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (2, 6, 3), FLOAT)

    def par(params, xs):
        return lj.parallel_scan(cell, params, xs)[1]

    check_grads(par, (params, xs), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)
    w = jax.random.normal(jax.random.key(3), (2, 6, 6), FLOAT)
    g_par = jax.grad(lambda p: jnp.sum(par(p, xs) * w))(params)
    g_seq = jax.grad(lambda p: jnp.sum(lj.scan(cell, p, xs)[1] * w))(params)
    for a, b in zip(jax.tree.leaves(g_par), jax.tree.leaves(g_seq), strict=True):
        assert_close(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: type(c).__name__)
def test_stable_and_equal_at_ten_thousand_steps(cell):
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1), scale=2.0)
    xs = 4.0 * jax.random.normal(jax.random.key(2), (2, 10_000, 3))
    _, y_s = lj.scan(cell, params, xs)
    _, y_p = jax.jit(lambda p, x: lj.parallel_scan(cell, p, x))(params, xs)
    assert_close(y_p, y_s, rtol=1e-4, atol=1e-5)
    loss = lambda p, x: jnp.sum(lj.parallel_scan(cell, p, x)[1])  # noqa: E731
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_vmap_matches_batch_and_recurrent_mask_is_refused():
    cell = lj.minGRUCell(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (3, 5, 3))
    _, ys = lj.parallel_scan(cell, params, xs)
    _, ys_v = jax.vmap(lambda x: lj.parallel_scan(cell, params, x))(xs)
    assert_close(ys, ys_v, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"minGRUCell.__call__.*recurrent_mask.*must be None"):
        cell(params, cell.initial_carry(), xs[0, 0], recurrent_mask=jnp.ones(4))
    with pytest.raises(ValueError, match=r"minLSTMCell.*hidden_size.*positive int"):
        lj.minLSTMCell(0)
