"""Gradient flow and gate statistics against explicit Jacobians, closed forms and hand loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax import GRUCell, LSTMCell, SimpleRNNCell
from lstm_jax.diagnostics import gate_statistics, input_gradient_flow, state_gradient_flow
from tests.helpers import FLOAT, assert_close, normal, randomize

CELLS = [
    SimpleRNNCell(3, param_dtype=FLOAT),
    GRUCell(3, param_dtype=FLOAT),
    LSTMCell(3, param_dtype=FLOAT),
    LSTMCell(4, proj_size=2, peephole=True, param_dtype=FLOAT),
]


def _setup(cell, batch_shape, T=6, I=2, seed=0):
    k_p, k_x = jax.random.split(jax.random.key(seed))
    params = randomize(cell.init(k_p, I), k_p)
    return params, normal(k_x, (*batch_shape, T, I))


def _loop(cell, params, xs, carry):
    """A Python loop over time: the outputs ``(T, P)`` of one example."""
    ys = []
    for t in range(xs.shape[0]):
        carry, y = cell(params, carry, xs[t])
        ys.append(y)
    return jnp.stack(ys)


@pytest.mark.parametrize(
    ("cell", "batch_shape"),
    [(CELLS[1], (2,)), (CELLS[2], ()), (CELLS[2], (2, 1)), (CELLS[3], (2,))],
    ids=["gru", "lstm-unbatched", "lstm-2x1", "lstmp-peephole"],
)
def test_input_flow_matches_explicit_jacobian(cell, batch_shape):
    params, xs = _setup(cell, batch_shape)
    flow = input_gradient_flow(cell, params, xs)
    flat = xs.reshape((-1, *xs.shape[-2:]))  # (N, T, I)
    last = jax.jit(jax.jacfwd(lambda x: _loop(cell, params, x, cell.initial_carry())[-1]))
    expected = []
    for x in flat:
        jac = np.asarray(last(x), np.float64)  # (P, T, I)
        expected.append(np.linalg.norm(jac, axis=(0, 2))[::-1])
    assert flow.norm.shape == (*batch_shape, 6)
    np.testing.assert_array_equal(flow.lag, np.arange(6))
    assert_close(flow.norm.reshape(-1, 6), np.stack(expected), rtol=1e-4, atol=1e-6)


def test_input_flow_of_linear_rnn_is_a_matrix_power():
    """``h_t = x_t W_x + h_{t-1} W_h``: ``dh_T/dx_t = (W_x W_h^(T-1-t))^T``, in float64 NumPy."""
    cell = SimpleRNNCell(4, activation="identity", param_dtype=FLOAT)
    params, xs = _setup(cell, (), T=8, I=3)
    flow = input_gradient_flow(cell, params, xs)
    w_x, w_h = np.asarray(params.w_x, np.float64), np.asarray(params.w_h, np.float64)
    expected = [np.linalg.norm(w_x @ np.linalg.matrix_power(w_h, k)) for k in range(8)]
    assert_close(flow.norm, expected, rtol=1e-4, atol=1e-6)


def test_input_flow_matches_finite_differences():
    cell = LSTMCell(3, param_dtype=FLOAT)
    params, xs = _setup(cell, (), T=5, I=2)
    flow = input_gradient_flow(cell, params, xs)
    eps = 1e-3

    def last(x):
        return np.asarray(_loop(cell, params, x, cell.initial_carry())[-1], np.float64)

    for t in range(5):
        cols = []
        for i in range(2):
            e = jnp.zeros_like(xs).at[t, i].set(eps)
            cols.append((last(xs + e) - last(xs - e)) / (2 * eps))
        np.testing.assert_allclose(flow.norm[4 - t], np.linalg.norm(np.stack(cols)), rtol=2e-2)


@pytest.mark.parametrize("cell", CELLS[1:], ids=lambda c: c.short_repr())
def test_state_flow_matches_grad_of_the_remaining_sequence(cell):
    """Entry k is dL/d(carry entering step T-1-k): the gradient of the rest of the loop."""
    params, xs = _setup(cell, (2,), T=4)
    T = xs.shape[1]

    def loss(ys):  # (2, T, P) -> scalar, uses every step
        return jnp.sum(jnp.sin(ys) * jnp.arange(1, T + 1, dtype=ys.dtype)[None, :, None])

    flow = state_gradient_flow(cell, params, xs, loss)
    np.testing.assert_array_equal(flow.lag, np.arange(1, T + 1))
    for b in range(2):
        carry, head = cell.initial_carry(), []
        for t in range(T):

            def rest(c, t=t, b=b, head=tuple(head)):
                tail = _loop(cell, params, xs[b, t:], c)
                ys = jnp.concatenate([jnp.stack(head), tail]) if head else tail
                other = xs[1 - b, None]  # the other example contributes a constant
                out = jnp.zeros((2, T, ys.shape[-1]), ys.dtype).at[b].set(ys)
                return loss(out) + 0.0 * jnp.sum(other)

            g = jax.grad(rest)(carry)
            norm = np.sqrt(sum(float(jnp.sum(jnp.square(leaf))) for leaf in jax.tree.leaves(g)))
            assert_close(flow.norm[b, T - 1 - t], norm, rtol=1e-4, atol=1e-6)
            carry, y = cell(params, carry, xs[b, t])
            head.append(y)


def test_state_flow_default_loss_ends_with_the_initial_carry():
    cell = LSTMCell(3, param_dtype=FLOAT)
    params, xs = _setup(cell, ())
    flow = state_gradient_flow(cell, params, xs)

    def last_sum(c):
        return jnp.sum(_loop(cell, params, xs, c)[-1])

    g = jax.grad(last_sum)(cell.initial_carry())
    expected = np.sqrt(float(jnp.sum(g.h**2) + jnp.sum(g.c**2)))
    assert_close(flow.norm[-1], expected, rtol=1e-4, atol=1e-6)


def test_lstm_without_forget_gate_keeps_a_constant_error_carousel():
    """With ``f_t = 1`` and no output dependence, dL/dC flows back unchanged (the 1997 CEC)."""
    cell = LSTMCell(3, forget_gate=False, param_dtype=FLOAT)
    params = randomize(cell.init(jax.random.key(1), 2), jax.random.key(2))
    params = params._replace(w_h=jnp.zeros_like(params.w_h))  # no h -> gate feedback
    xs = normal(jax.random.key(3), (10, 2))

    def loss(ys):  # depends only on the final cell state through h_T
        return jnp.sum(ys[-1])

    # dL/dC_{t} = dL/dC_T for every t: the norm of dL/dc is constant; h adds nothing (w_h = 0).
    flow = state_gradient_flow(cell, params, xs, loss)
    assert_close(flow.norm[1:], jnp.full((9,), flow.norm[1]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("cell", "names"),
    [
        (LSTMCell(5, param_dtype=FLOAT), ("f", "i", "o")),
        (GRUCell(5, param_dtype=FLOAT), ("r", "z")),
    ],
)
def test_gate_statistics_match_a_hand_loop(cell, names):
    params, xs = _setup(cell, (3, 2), T=7)
    params = jax.tree.map(lambda p: 4.0 * p, params)  # push some units into saturation
    stats = gate_statistics(cell, params, xs, threshold=0.2)
    assert tuple(sorted(stats)) == tuple(sorted(names))
    carry = cell.initial_carry((3, 2))
    for t in range(7):
        carry, gates = cell.gates(params, carry, xs[:, :, t])
        for n in names:
            g = np.asarray(getattr(gates, n), np.float64)
            closed, open_ = np.mean(g < 0.2), np.mean(g > 0.8)
            assert_close(stats[n].mean[t], g.mean(), rtol=1e-5, atol=1e-6)
            assert_close(stats[n].closed[t], closed)
            assert_close(stats[n].open[t], open_)
            assert_close(stats[n].saturation[t], closed + open_)
    assert float(jnp.max(stats[names[0]].saturation)) > 0.0


def test_gate_statistics_without_forget_gate_report_an_open_gate():
    cell = LSTMCell(4, forget_gate=False, param_dtype=FLOAT)
    params, xs = _setup(cell, (2,))
    f = gate_statistics(cell, params, xs)["f"]
    assert_close(f.mean, np.ones(6))
    assert_close(f.open, np.ones(6))


def test_errors():
    rnn = SimpleRNNCell(3)
    params = rnn.init(jax.random.key(0), 2)
    xs = jnp.ones((4, 5, 2))
    with pytest.raises(TypeError, match=r"`gate_statistics`: `cell` must have a `gates` method"):
        gate_statistics(rnn, params, xs)
    lstm = LSTMCell(3)
    lp = lstm.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"`threshold` must be a number in \(0, 0.5\); got 0.7"):
        gate_statistics(lstm, lp, xs, threshold=0.7)
    with pytest.raises(ValueError, match=r"`input_gradient_flow`: `xs` has 3 features"):
        input_gradient_flow(lstm, lp, jnp.ones((4, 5, 3)))
    with pytest.raises(TypeError, match=r"`state_gradient_flow`: `loss_fn` must be a callable"):
        state_gradient_flow(lstm, lp, xs, loss_fn=3)
    with pytest.raises(ValueError, match=r"`loss_fn` must return a scalar; got \(4, 3\)"):
        state_gradient_flow(lstm, lp, xs, loss_fn=lambda ys: ys[:, -1])
