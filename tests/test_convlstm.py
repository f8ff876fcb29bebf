"""ConvLSTM against a float64 NumPy loop written from Shi et al.'s equations, and through scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax import LSTMState, scan
from lstm_jax.cells.convlstm import ConvLSTMCell, ConvLSTMParams
from tests.helpers import FLOAT, assert_close, normal, randomize


def _np_conv_same(x, k):
    """``x: (N, Hs, Ws, I)``, ``k: (kh, kw, I, O)``: zero-padded cross-correlation, by loops."""
    kh, kw = k.shape[:2]
    ph, pw = kh // 2, kw // 2
    N, Hs, Ws, _ = x.shape
    pad = np.zeros((N, Hs + 2 * ph, Ws + 2 * pw, x.shape[-1]))
    pad[:, ph : ph + Hs, pw : pw + Ws] = x
    out = np.zeros((N, Hs, Ws, k.shape[-1]))
    for dy in range(kh):
        for dx in range(kw):
            out += pad[:, dy : dy + Hs, dx : dx + Ws] @ k[dy, dx]
    return out


def _np_kernel(w, kh, kw):
    """Undo the storage layout ``(I, kh*kw*4F)`` by its definition: ``w[c].reshape(kh, kw, 4F)``."""
    w = np.asarray(w, np.float64)
    k = np.zeros((kh, kw, w.shape[0], w.shape[1] // (kh * kw)))
    for c in range(w.shape[0]):
        k[:, :, c, :] = w[c].reshape(kh, kw, -1)
    return k


def _np_convlstm(params, frames, kh, kw):
    """``frames: (T, N, Hs, Ws, C)`` -> hidden states ``(T, N, Hs, Ws, F)`` and the final c."""
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    k_x, k_h = _np_kernel(params.w_x, kh, kw), _np_kernel(params.w_h, kh, kw)
    b = np.asarray(params.b, np.float64)
    F = k_h.shape[2]
    T, N, Hs, Ws, _ = frames.shape
    h, c, hs = np.zeros((N, Hs, Ws, F)), np.zeros((N, Hs, Ws, F)), []
    for t in range(T):
        z = _np_conv_same(np.asarray(frames[t], np.float64), k_x) + _np_conv_same(h, k_h) + b
        i, f, g, o = sig(z[..., :F]), sig(z[..., F : 2 * F]), z[..., 2 * F : 3 * F], z[..., 3 * F :]
        c = f * c + i * np.tanh(g)
        h = sig(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs), c


def test_step_and_scan_match_numpy_reference():
    kernel_size = (3, 5)  # not square, so a transposed kernel would show
    cell = ConvLSTMCell(3, kernel_size=kernel_size, param_dtype=FLOAT)
    key = jax.random.key(0)
    params = randomize(cell.init(key, 2), key)
    frames = normal(jax.random.key(1), (4, 2, 6, 5, 2))  # (T, B, Hs, Ws, C)
    ref_h, ref_c = _np_convlstm(params, frames, *kernel_size)
    carry, ys = scan(cell, params, frames, time_major=True)
    assert ys.shape == (4, 2, 6, 5, 3)
    assert_close(ys, ref_h, rtol=1e-4, atol=1e-5)
    assert_close(carry.c, ref_c, rtol=1e-4, atol=1e-5)
    carry = cell.initial_carry((2, 6, 5))
    for t in range(4):
        carry, y = cell(params, carry, frames[t])
        assert_close(y, ref_h[t], rtol=1e-4, atol=1e-5)


def test_unbatched_and_two_batch_axes_agree():
    cell = ConvLSTMCell(2, param_dtype=FLOAT)
    params = randomize(cell.init(jax.random.key(2), 1), jax.random.key(3))
    frames = normal(jax.random.key(4), (3, 2, 3, 4, 4, 1))  # (T, 2, 3, Hs, Ws, C)
    _, ys = scan(cell, params, frames, time_major=True)
    _, ys0 = scan(cell, params, frames[:, 1, 2], time_major=True)  # (T, Hs, Ws, C)
    assert_close(ys[:, 1, 2], ys0)


def test_layout_kernels_and_init():
    cell = ConvLSTMCell(4, kernel_size=(3, 5), forget_bias=1.5)
    params = cell.init(jax.random.key(0), 2)
    assert isinstance(params, ConvLSTMParams)
    assert params.w_x.shape == (2, 3 * 5 * 16) and params.w_h.shape == (4, 3 * 5 * 16)
    k_x, k_h = cell.kernels(params)
    assert k_x.shape == (3, 5, 2, 16) and k_h.shape == (3, 5, 4, 16)
    np.testing.assert_array_equal(k_x, _np_kernel(params.w_x, 3, 5))
    np.testing.assert_array_equal(params.b, np.repeat([0.0, 1.5, 0.0, 0.0], 4))
    # Glorot uniform per gate: bound sqrt(6 / (fan_in + fan_out)), fan = kh*kw*channels.
    bound = np.sqrt(6.0 / (15 * 2 + 15 * 4))
    assert 0.8 * bound < float(jnp.max(jnp.abs(k_x))) <= bound
    carry = cell.initial_carry((2, 7, 9))
    assert isinstance(carry, LSTMState) and carry.h.shape == (2, 7, 9, 4)
    assert cell.param_shapes(2) == jax.tree.map(lambda a: a.shape, params)
    assert hash(cell) == hash(ConvLSTMCell(4, kernel_size=(3, 5), forget_bias=1.5))


def test_gradients_flow_through_scan():
    cell = ConvLSTMCell(2, param_dtype=FLOAT)
    params = cell.init(jax.random.key(0), 1)
    frames = normal(jax.random.key(1), (3, 5, 5, 1))

    @jax.jit
    def loss(p):
        return jnp.sum(scan(cell, p, frames, time_major=True)[1][-1] ** 2)

    g = jax.grad(loss)(params)
    eps = 1e-3
    d = jnp.zeros_like(params.w_x).at[0, 7].set(eps)
    fd = (loss(params._replace(w_x=params.w_x + d)) - loss(params._replace(w_x=params.w_x - d))) / (
        2 * eps
    )
    np.testing.assert_allclose(float(g.w_x[0, 7]), float(fd), rtol=2e-2, atol=1e-4)


def test_errors():
    with pytest.raises(
        ValueError, match=r"`ConvLSTMCell`: `kernel_size` must be a tuple of two odd"
    ):
        ConvLSTMCell(4, kernel_size=(2, 3))
    with pytest.raises(ValueError, match=r"`ConvLSTMCell`: `hidden_size` must be a positive int"):
        ConvLSTMCell(0)
    cell = ConvLSTMCell(4)
    params = cell.init(jax.random.key(0), 2)
    carry = cell.initial_carry((6, 6))
    with pytest.raises(ValueError, match=r"`x` must be a frame \(\.\.\., Hs, Ws, channels\)"):
        cell(params, cell.initial_carry((6,)), jnp.ones((6, 2)))
    with pytest.raises(ValueError, match=r"`x` has 3 features but `params` expect 2"):
        cell(params, carry, jnp.ones((6, 6, 3)))
    with pytest.raises(ValueError, match=r"`carry.h` must have shape \(5, 6, 4\)"):
        cell(params, cell.initial_carry((6, 6)), jnp.ones((5, 6, 2)))
    with pytest.raises(ValueError, match=r"`scan`: `xs` has 3 features but `params` expect 2"):
        scan(cell, params, jnp.ones((3, 6, 6, 3)), time_major=True)
