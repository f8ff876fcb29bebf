"""Each cell against float64 NumPy written from the equations (tests/reference.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FLOAT, assert_close, normal, randomize
from reference import gru_step, lstm_step, rnn_step

import lstm_jax as lj

LSTM_OPTIONS = [
    {},
    {"peephole": True},
    {"proj_size": 3},
    {"layer_norm": True},
    {"forget_gate": False},
    {"use_bias": False},
    {"peephole": True, "proj_size": 4, "layer_norm": True},
]


@pytest.mark.x64
@pytest.mark.parametrize("options", LSTM_OPTIONS, ids=str)
@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 3)], ids=str)
def test_lstm_step_matches_numpy(options, batch_shape):
    H, I = 6, 5
    cell = lj.LSTMCell(H, param_dtype=FLOAT, **options)
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    params = randomize(cell.init(k1, I), k2)
    x = normal(k3, (*batch_shape, I))
    carry = lj.LSTMState(
        *(
            normal(k, s)
            for k, s in zip(jax.random.split(k4), cell.carry_shapes(batch_shape), strict=True)
        )
    )
    new, y = cell(params, carry, x)
    step = functools.partial(
        lstm_step,
        params,
        hidden_size=H,
        forget_gate=cell.forget_gate,
        peephole=cell.peephole,
        proj=cell.proj_size is not None,
        layer_norm_on=cell.layer_norm,
    )
    hs, cs = np.asarray(carry.h, np.float64), np.asarray(carry.c, np.float64)
    xs = np.asarray(x, np.float64)
    for idx in np.ndindex(*batch_shape):
        h_ref, c_ref = step(hs[idx], cs[idx], xs[idx])
        assert_close(new.h[idx], h_ref)
        assert_close(new.c[idx], c_ref)
        assert_close(y[idx], h_ref)


@pytest.mark.x64
def test_lstm_hard_sigmoid_and_relu_activations():
    cell = lj.LSTMCell(4, gate_activation="hard_sigmoid", activation="relu", param_dtype=FLOAT)
    params = randomize(cell.init(jax.random.key(1), 3), jax.random.key(2))
    x, h, c = (
        normal(jax.random.key(3), (3,)),
        normal(jax.random.key(4), (4,)),
        normal(jax.random.key(5), (4,)),
    )
    new, _ = cell(params, lj.LSTMState(h, c), x)
    hard = lambda z: np.clip(z / 6 + 0.5, 0, 1)  # noqa: E731
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    h_ref, c_ref = lstm_step(
        params,
        np.asarray(h, np.float64),
        np.asarray(c, np.float64),
        np.asarray(x, np.float64),
        hidden_size=4,
        sigma=hard,
        act=relu,
    )
    assert_close(new.h, h_ref)
    assert_close(new.c, c_ref)


@pytest.mark.x64
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("batch_shape", [(), (3,)], ids=str)
def test_gru_step_matches_numpy(reset_after, use_bias, batch_shape):
    cell = lj.GRUCell(5, reset_after=reset_after, use_bias=use_bias, param_dtype=FLOAT)
    params = randomize(cell.init(jax.random.key(0), 4), jax.random.key(1))
    x, h = (
        normal(jax.random.key(2), (*batch_shape, 4)),
        normal(jax.random.key(3), (*batch_shape, 5)),
    )
    new, y = cell(params, h, x)
    for idx in np.ndindex(*batch_shape):
        ref = gru_step(
            params,
            np.asarray(h, np.float64)[idx],
            np.asarray(x, np.float64)[idx],
            hidden_size=5,
            reset_after=reset_after,
        )
        assert_close(new[idx], ref)
        assert_close(y[idx], ref)


@pytest.mark.x64
@pytest.mark.parametrize("batch_shape", [(), (2, 2)], ids=str)
def test_simple_rnn_step_matches_numpy(batch_shape):
    cell = lj.SimpleRNNCell(5, param_dtype=FLOAT)
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1))
    x, h = (
        normal(jax.random.key(2), (*batch_shape, 3)),
        normal(jax.random.key(3), (*batch_shape, 5)),
    )
    new, _ = cell(params, h, x)
    for idx in np.ndindex(*batch_shape):
        assert_close(
            new[idx],
            rnn_step(params, np.asarray(h, np.float64)[idx], np.asarray(x, np.float64)[idx]),
        )


def test_lstm_init_layout_and_forget_bias():
    cell = lj.LSTMCell(4, forget_bias=1.0)
    params = cell.init(jax.random.key(0), 3)
    assert params.w_x.shape == (3, 16) and params.w_h.shape == (4, 16) and params.b.shape == (16,)
    np.testing.assert_array_equal(params.b[4:8], 1.0)  # the f block of i, f, g, o
    np.testing.assert_array_equal(params.b[:4], 0.0)
    np.testing.assert_array_equal(params.b[8:], 0.0)
    # Orthogonal recurrent init: every (H, H) gate block is orthogonal.
    for k in range(4):
        blk = np.asarray(params.w_h[:, 4 * k : 4 * (k + 1)])
        assert_close(blk.T @ blk, np.eye(4), rtol=1e-5, atol=1e-5)
    # Glorot uniform input init: |w| <= sqrt(6 / (fan_in + fan_out)) per gate block.
    assert float(jnp.max(jnp.abs(params.w_x))) <= np.sqrt(6 / (3 + 4)) + 1e-6


def test_lstm_1997_cell_has_three_gate_blocks_and_no_forgetting():
    cell = lj.LSTMCell(4, forget_gate=False)
    params = randomize(cell.init(jax.random.key(0), 2), jax.random.key(1))
    assert params.w_x.shape == (2, 12)
    carry = lj.LSTMState(jnp.zeros(4), jnp.full((4,), 3.0))
    new, gates = cell.gates(params, carry, jnp.zeros(2))
    np.testing.assert_allclose(new.c, 3.0 + gates.i * gates.g, rtol=1e-6)


def test_torch_style_uniform_init_bounds():
    cell = lj.LSTMCell(16, kernel_init="uniform", recurrent_init="uniform")
    params = cell.init(jax.random.key(0), 3)
    assert float(jnp.max(jnp.abs(params.w_x))) <= 16**-0.5
    assert float(jnp.max(jnp.abs(params.w_h))) <= 16**-0.5


def test_bf16_products_keep_f32_params_carry_and_outputs():
    # dtype=bfloat16 sets the products' operands; y and carry.h share the promoted dtype (f32).
    cell = lj.LSTMCell(32, dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), 8)
    x = jax.random.normal(jax.random.key(1), (4, 20, 8), jnp.float32)
    carry, ys = lj.scan(cell, params, x)
    assert ys.dtype == carry.c.dtype == carry.h.dtype == jnp.float32
    assert not np.allclose(ys, lj.scan(lj.LSTMCell(32), params, x)[1], atol=1e-6)  # bf16 used
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    ref_carry, ref = lj.scan(lj.LSTMCell(32), params, x)
    # bf16 products carry ~3 significant digits; the documented tolerance is 2e-2.
    np.testing.assert_allclose(np.asarray(ys, np.float32), ref, atol=2e-2)
    np.testing.assert_allclose(carry.c, ref_carry.c, atol=2e-2)
    grads = jax.grad(lambda p: jnp.mean(lj.scan(cell, p, x)[1].astype(jnp.float32) ** 2))(params)
    assert all(
        g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)
    )


@pytest.mark.parametrize(
    "cell",
    [lj.LSTMCell(8, peephole=True, proj_size=4), lj.GRUCell(8), lj.SimpleRNNCell(8)],
    ids=lambda c: type(c).__name__,
)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=lambda d: d.__name__)
def test_low_precision_params_are_drawn_in_f32_and_cast(cell, dtype):
    # the orthogonal recurrent init has no bf16 QR kernel on CPU; the draw is made in f32
    low = type(cell)(**{**vars(cell), "param_dtype": dtype}).init(jax.random.key(0), 3)
    ref = cell.init(jax.random.key(0), 3)
    for a, b in zip(jax.tree.leaves(low), jax.tree.leaves(ref), strict=True):
        assert a.dtype == dtype
        np.testing.assert_array_equal(
            np.asarray(a, np.float32), np.asarray(b.astype(dtype), np.float32)
        )
    carry, ys = lj.scan(
        type(cell)(**{**vars(cell), "param_dtype": dtype}), low, jnp.ones((2, 5, 3), dtype)
    )
    assert ys.dtype == dtype and bool(jnp.all(jnp.isfinite(ys.astype(jnp.float32))))


def test_gates_are_returned_and_consistent():
    cell = lj.LSTMCell(5)
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1))
    carry = cell.initial_carry((2,))
    x = jax.random.normal(jax.random.key(2), (2, 3), jnp.float32)  # the params' dtype
    new, g = cell.gates(params, carry, x)
    np.testing.assert_allclose(g.c, g.f * carry.c + g.i * g.g, rtol=1e-6)
    np.testing.assert_allclose(g.h, g.o * jnp.tanh(g.c), rtol=1e-6)
    np.testing.assert_allclose(new.h, cell(params, carry, x)[0].h, rtol=1e-6)
