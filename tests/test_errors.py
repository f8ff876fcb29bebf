"""Every bad input raises a clear error at trace time, before XLA sees it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj

CELL = lj.LSTMCell(8)
PARAMS = CELL.init(jax.random.key(0), 3)


def test_wrong_feature_size_names_both_sizes():
    with pytest.raises(
        ValueError,
        match=r"`scan`: `xs` has 5 features but `params` expect 3 "
        r"\(input_size of LSTMCell\(hidden_size=8\)\); got xs.shape=\(4, 10, 5\)",
    ):
        lj.scan(CELL, PARAMS, jnp.ones((4, 10, 5)))


def test_wrong_rank():
    with pytest.raises(
        ValueError,
        match=r"`xs` must have shape \(\.\.\., T, input_size\) \(rank >= 2\); got xs.shape=\(3,\)",
    ):
        lj.scan(CELL, PARAMS, jnp.ones((3,)))
    with pytest.raises(ValueError, match=r"\(T, \.\.\., input_size\)"):
        lj.scan(CELL, PARAMS, jnp.ones((3,)), time_major=True)


def test_integer_inputs():
    with pytest.raises(TypeError, match=r"`xs` must be a floating array .* got dtype=int32"):
        lj.scan(CELL, PARAMS, jnp.ones((2, 4, 3), jnp.int32))
    with pytest.raises(TypeError, match=r"`x` must be a floating array"):
        CELL(PARAMS, CELL.initial_carry(), np.ones(3, np.int64))


def test_not_an_array():
    with pytest.raises(TypeError, match=r"`xs` must be an array of shape .* got list"):
        lj.scan(CELL, PARAMS, [[1.0, 2.0, 3.0]])


def test_carry_batch_mismatch():
    carry = CELL.initial_carry((5,))
    with pytest.raises(
        ValueError,
        match=r"`carry.h` must have shape \(4, 8\) \(batch \(4,\) of `xs`\); got shape \(5, 8\)",
    ):
        lj.scan(CELL, PARAMS, jnp.ones((4, 10, 3)), carry)


def test_carry_wrong_structure():
    with pytest.raises(TypeError, match=r"`carry` does not have the structure"):
        lj.scan(CELL, PARAMS, jnp.ones((4, 10, 3)), jnp.zeros((4, 8)))


def test_lengths_shape_dtype_and_range():
    xs = jnp.ones((4, 10, 3))
    with pytest.raises(
        ValueError,
        match=r"`lengths` must have the batch shape of `xs`, \(4,\); got lengths.shape=\(3,\)",
    ):
        lj.scan(CELL, PARAMS, xs, lengths=jnp.array([1, 2, 3]))
    with pytest.raises(
        TypeError, match=r"`lengths` must be an integer array of shape \(4,\); got float32"
    ):
        lj.scan(CELL, PARAMS, xs, lengths=jnp.ones(4))
    with pytest.raises(
        ValueError, match=r"`lengths` must lie in \[0, T=10\]; got values from -1 to 11"
    ):
        lj.scan(CELL, PARAMS, xs, lengths=jnp.array([-1, 2, 3, 11]))


def test_params_of_wrong_type_and_shape():
    with pytest.raises(
        TypeError, match=r"`params` must be a LSTMParams \(from `LSTMCell.init`\); got dict"
    ):
        lj.scan(CELL, {"w": 1}, jnp.ones((2, 4, 3)))
    gru_params = lj.GRUCell(8).init(jax.random.key(0), 3)
    with pytest.raises(TypeError, match=r"got GRUParams"):
        lj.scan(CELL, gru_params, jnp.ones((2, 4, 3)))
    bad = PARAMS._replace(w_h=jnp.zeros((8, 31)))
    with pytest.raises(
        ValueError,
        match=r"`params.w_h` must have shape \(8, 32\) "
        r"\(LSTMCell\(hidden_size=8\)\); got shape \(8, 31\)",
    ):
        lj.scan(CELL, bad, jnp.ones((2, 4, 3)))
    with pytest.raises(TypeError, match=r"`params` does not have the structure"):
        lj.scan(lj.LSTMCell(8, peephole=True), PARAMS, jnp.ones((2, 4, 3)))


def test_every_problem_reported_at_once():
    with pytest.raises(TypeError) as info:
        lj.scan(CELL, {"w": 1}, jnp.ones((2, 4, 3), jnp.int32))
    assert "`params` must be" in str(info.value) and "`xs` must be a floating array" in str(
        info.value
    )


def test_errors_are_raised_under_jit_at_trace_time():
    f = jax.jit(lambda xs: lj.scan(CELL, PARAMS, xs))
    with pytest.raises(ValueError, match="`xs` has 5 features"):
        f(jnp.ones((2, 4, 5)))


def test_bad_configs():
    with pytest.raises(
        ValueError, match=r"`LSTMCell`: `hidden_size` must be a positive int; got 0"
    ):
        lj.LSTMCell(0)
    with pytest.raises(
        ValueError, match=r"`proj_size` must be smaller than `hidden_size` \(4\); got proj_size=4"
    ):
        lj.LSTMCell(4, proj_size=4)
    with pytest.raises(ValueError, match=r"`gate_activation` must be a callable or one of"):
        lj.LSTMCell(4, gate_activation="sigmod")
    with pytest.raises(ValueError, match=r"`kernel_init` must be a callable"):
        lj.GRUCell(4, kernel_init="xavier")
    with pytest.raises(
        ValueError, match=r"`StackedRNN`: `dropout` must be a finite number in \[0, 1\); got 1.5"
    ):
        lj.LSTM(4, dropout=1.5)
    with pytest.raises(
        ValueError, match=r"`StackedRNN`: `num_layers` must be a positive int; got 0"
    ):
        lj.LSTM(4, num_layers=0)
    with pytest.raises(
        TypeError, match=r"`LSTMCell.init`: `input_size` must be a positive int; got 2.0"
    ):
        CELL.init(jax.random.key(0), 2.0)


def test_stack_errors():
    rnn = lj.LSTM(4, num_layers=2)
    params = rnn.init(jax.random.key(0), 3)
    with pytest.raises(
        TypeError, match=r"`StackedRNN.apply`: `params` must be a tuple of 2 LayerParams"
    ):
        rnn.apply(params[:1], jnp.ones((2, 5, 3)))
    with pytest.raises(
        ValueError, match=r"`StackedRNN.apply`: `xs` has 2 features but `params` expect 3"
    ):
        rnn.apply(params, jnp.ones((2, 5, 2)))
    with pytest.raises(ValueError, match=r"must hold backward cells \(bidirectional=True\)"):
        lj.LSTM(4, num_layers=2, bidirectional=True).apply(params, jnp.ones((2, 5, 3)))
    with pytest.raises(TypeError, match=r"`carry` must be a tuple of 2 LayerState"):
        rnn.apply(params, jnp.ones((2, 5, 3)), carry=CELL.initial_carry((2,)))


def test_head_errors():
    head = lj.Dense(2)
    params = head.init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match=r"`Dense.apply`: `params.w` must have shape \(5, 2\)"):
        head.apply(params, jnp.ones((3, 5)))
    att = lj.AdditiveAttention(3)
    ap = att.init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match=r"`lengths` must have the leading shape of `hs`"):
        att.apply(ap, jnp.ones((2, 5, 4)), jnp.array([1, 2, 3]))
    with pytest.raises(TypeError, match=r"`last_step`: `lengths` must be an integer array"):
        lj.last_step(jnp.ones((2, 5, 4)), jnp.ones(2))
