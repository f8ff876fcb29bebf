"""The LSTM's hand-derived derivative (``lstm_scan``) equals ``jax.grad`` through ``scan``.

Forward mode, second order and the GRU and simple RNN rules are tested in
``test_fast_paths.py``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from helpers import FLOAT, X64, assert_close, normal, randomize
from jax.test_util import check_grads

import lstm_jax as lj

I, H, T = 3, 5, 7


def _setup(cell, batch, time_major, seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    params = randomize(cell.init(keys[0], I), keys[1])
    shape = (T, *batch, I) if time_major else (*batch, T, I)
    xs = normal(keys[2], shape)
    carry = randomize(cell.initial_carry(batch), keys[3])
    return params, xs, carry


def _loss_and_grads(run, cell, params, xs, carry, **kw):
    """A loss that reads every output and both final states, and its gradient w.r.t. all."""

    def loss(params, xs, carry):
        final, ys = run(cell, params, xs, carry, **kw)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final.h**2) + jnp.sum(jnp.cos(final.c)), (final, ys)

    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry)


def _assert_same(cell, params, xs, carry, bptt_kw=None, **kw):
    (v1, (f1, y1)), g1 = _loss_and_grads(
        lj.lstm_scan, cell, params, xs, carry, **kw, **(bptt_kw or {})
    )
    (v2, (f2, y2)), g2 = _loss_and_grads(lj.scan, cell, params, xs, carry, **kw)
    assert y1.shape == y2.shape and y1.dtype == y2.dtype
    for a, b in zip(
        jax.tree.leaves((v1, f1, y1, g1)), jax.tree.leaves((v2, f2, y2, g2)), strict=True
    ):
        assert_close(a, b)


# every batch rank, reverse and time_major each seen with and without the others (pairwise)
@pytest.mark.parametrize(
    "batch, reverse, time_major",
    [((), False, False), ((2,), True, False), ((2, 3), False, True), ((2,), True, True)],
)
def test_equals_autodiff_outputs_carry_and_grads(batch, reverse, time_major):
    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params, xs, carry = _setup(cell, batch, time_major)
    _assert_same(cell, params, xs, carry, reverse=reverse, time_major=time_major)


@pytest.mark.x64
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("time_major", [False, True])
def test_equals_autodiff_with_lengths(reverse, time_major):
    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params, xs, carry = _setup(cell, (2, 3), time_major, seed=1)
    lengths = jnp.array([[7, 3, 0], [1, 5, 6]])
    _assert_same(cell, params, xs, carry, lengths=lengths, reverse=reverse, time_major=time_major)


@pytest.mark.x64
@pytest.mark.parametrize(
    "options",
    [{"use_bias": False}, {"forget_gate": False}, {"forget_gate": False, "use_bias": False}],
)
def test_equals_autodiff_for_cell_variants(options):
    cell = lj.LSTMCell(H, param_dtype=FLOAT, **options)
    params, xs, carry = _setup(cell, (4,), False, seed=2)
    _assert_same(cell, params, xs, carry, lengths=jnp.array([7, 2, 0, 5]))


def test_equals_autodiff_with_recurrent_mask_including_its_gradient():
    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params, xs, carry = _setup(cell, (3,), False, seed=3)
    mask = jax.random.uniform(jax.random.key(9), (3, H), FLOAT)

    def loss(run, mask):
        return jnp.sum(run(cell, params, xs, carry, recurrent_mask=mask)[1] ** 2)

    assert_close(jax.grad(loss, 1)(lj.lstm_scan, mask), jax.grad(loss, 1)(lj.scan, mask))
    _assert_same(cell, params, xs, carry, recurrent_mask=mask, lengths=jnp.array([7, 4, 1]))


@pytest.mark.parametrize("input_size", [1, 8])  # stacked [x_t, h] product (4 I <= H) or two
@pytest.mark.parametrize("forget_gate", [True, False])
def test_both_product_layouts_equal_autodiff(input_size, forget_gate):
    cell = lj.LSTMCell(8, param_dtype=FLOAT, forget_gate=forget_gate)
    keys = jax.random.split(jax.random.key(10), 4)
    params = randomize(cell.init(keys[0], input_size), keys[1])
    xs = normal(keys[2], (3, T, input_size))
    carry = randomize(cell.initial_carry((3,)), keys[3])
    mask = jax.random.uniform(jax.random.key(11), (3, 8), FLOAT)
    kw = dict(lengths=jnp.array([7, 2, 5]), recurrent_mask=mask)
    _assert_same(cell, params, xs, carry, **kw)
    _assert_same(cell, params, xs, carry, bptt_kw={"checkpoint_every": 3}, **kw)


# 3 leaves a partial last segment; 7 = T: unsegmented
@pytest.mark.parametrize("k, reverse", [(1, False), (3, True), (3, False), (7, True)])
def test_checkpoint_every_equals_autodiff(k, reverse):
    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params, xs, carry = _setup(cell, (3,), False, seed=7)
    mask = jax.random.uniform(jax.random.key(8), (3, H), FLOAT)
    kw = dict(lengths=jnp.array([7, 4, 0]), reverse=reverse, recurrent_mask=mask)
    _assert_same(cell, params, xs, carry, bptt_kw={"checkpoint_every": k}, **kw)


@pytest.mark.parametrize("unroll", [2, True])  # True: the whole loop unrolled (7 = T)
def test_unroll_equals_autodiff(unroll):
    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params, xs, carry = _setup(cell, (2,), True, seed=9)
    kw = dict(lengths=jnp.array([6, 3]), time_major=True, unroll=unroll)
    _assert_same(cell, params, xs, carry, bptt_kw={"checkpoint_every": 4}, **kw)
    _assert_same(cell, params, xs, carry, **kw)


def test_default_carry_and_no_grad_path_match_scan():
    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params, xs, _ = _setup(cell, (2,), False, seed=4)
    (f1, y1), (f2, y2) = lj.lstm_scan(cell, params, xs), lj.scan(cell, params, xs)
    for a, b in zip(jax.tree.leaves((f1, y1)), jax.tree.leaves((f2, y2)), strict=True):
        assert_close(a, b)
    jitted = jax.jit(lambda p, x: lj.lstm_scan(cell, p, x, unroll=3))(params, xs)
    assert_close(jitted[1], y2)


def test_vmap_over_examples_equals_batched_call():
    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params, xs, _ = _setup(cell, (3,), False, seed=5)

    def grad_one(x):
        return jax.grad(lambda p: jnp.sum(lj.lstm_scan(cell, p, x)[1] ** 2))(params)

    per_example = jax.vmap(grad_one)(xs)
    batched = jax.grad(lambda p: jnp.sum(lj.lstm_scan(cell, p, xs)[1] ** 2))(params)
    for a, b in zip(jax.tree.leaves(per_example), jax.tree.leaves(batched), strict=True):
        assert_close(jnp.sum(a, axis=0), b)


def test_zero_length_sequence_falls_back_to_scan():
    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params = cell.init(jax.random.key(0), I)
    final, ys = lj.lstm_scan(cell, params, jnp.zeros((2, 0, I), FLOAT))
    assert ys.shape == (2, 0, H) and final.h.shape == (2, H)


@pytest.mark.x64
@pytest.mark.skipif(not X64, reason="finite differences need float64")
@pytest.mark.parametrize("kw", [{}, {"lengths": jnp.array([4, 1]), "reverse": True}])
def test_check_grads_against_finite_differences(kw):
    cell = lj.LSTMCell(3, param_dtype=jnp.float64)
    params, xs, carry = _setup(lj.LSTMCell(3, param_dtype=jnp.float64), (2,), False, seed=6)
    xs = xs[:, :4]

    def f(params, xs, carry):
        final, ys = lj.lstm_scan(cell, params, xs, carry, **kw)
        return ys, final

    # 1e-5: second-order finite differences of the plain `scan` miss by ~3e-6 here too
    check_grads(f, (params, xs, carry), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_stacked_bptt_equals_autodiff_with_dropout_and_lengths():
    kw = dict(num_layers=2, bidirectional=True, dropout=0.2, recurrent_dropout=0.3)
    auto, bptt = (
        lj.LSTM(H, **kw, backward="autodiff", param_dtype=FLOAT),
        lj.LSTM(H, **kw, backward="bptt", param_dtype=FLOAT),
    )
    assert bptt.backward == "bptt" and lj.LSTM(H).backward == "fast"
    params = randomize(auto.init(jax.random.key(0), I), jax.random.key(1))
    xs, lengths, key = (
        normal(jax.random.key(2), (4, T, I)),
        jnp.array([7, 3, 1, 0]),
        jax.random.key(3),
    )

    def loss(rnn, params):
        carry, ys = rnn.apply(params, xs, lengths=lengths, key=key)
        return jnp.sum(ys**2) + jnp.sum(carry[-1].backward.c)

    for a, b in zip(
        jax.tree.leaves(jax.value_and_grad(loss, 1)(bptt, params)),
        jax.tree.leaves(jax.value_and_grad(loss, 1)(auto, params)),
        strict=True,
    ):
        assert_close(a, b)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"peephole": True}, "`peephole=True`"),
        ({"proj_size": 2}, "`proj_size=2`"),
        ({"layer_norm": True}, "`layer_norm=True`"),
        ({"gate_activation": "hard_sigmoid"}, "`gate_activation='hard_sigmoid'`"),
        ({"activation": "relu"}, "`activation='relu'`"),
        ({"dtype": jnp.bfloat16}, "`dtype=bfloat16`"),
        ({"param_dtype": jnp.bfloat16}, "`param_dtype=bfloat16`"),
    ],
)
def test_unsupported_cells_raise_naming_the_option(options, match):
    cell = lj.LSTMCell(H, **options)
    # float32 init then cast: the orthogonal initialiser has no bfloat16 kernel on CPU
    params = lj.LSTMCell(H, **{**options, "param_dtype": jnp.float32}).init(jax.random.key(0), I)
    params = jax.tree.map(lambda a: a.astype(cell.param_dtype), params)
    xs = jnp.ones((2, T, I), cell.param_dtype)
    with pytest.raises(ValueError, match=r"`lstm_scan`: the hand-derived derivative .*" + match):
        lj.lstm_scan(cell, params, xs)
    with pytest.raises(ValueError, match=r"`StackedRNN`: .*" + match):
        lj.LSTM(H, backward="bptt", **options)


def test_bad_arguments_raise():
    cell = lj.LSTMCell(H)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.ones((2, T, I))
    with pytest.raises(TypeError, match=r"`lstm_scan`: `cell` must be an LSTMCell; got GRUCell"):
        gru = lj.GRUCell(H)
        lj.lstm_scan(gru, gru.init(jax.random.key(0), I), xs)
    with pytest.raises(TypeError, match=r"`StackedRNN`: `cell` must be an LSTMCell; got GRUCell"):
        lj.GRU(H).__class__(lj.GRUCell(H), backward="bptt")
    with pytest.raises(ValueError, match=r"`backward` must be 'fast', 'autodiff' or 'bptt'; got"):
        lj.LSTM(H, backward="manual")
    with pytest.raises(
        ValueError, match=r"`checkpoint_every` must be a positive int or None; got 0"
    ):
        lj.lstm_scan(cell, params, xs, checkpoint_every=0)
    with pytest.raises(ValueError, match=r"`recurrent_mask` must have the shape .* \(2, 5\); got"):
        lj.lstm_scan(cell, params, xs, recurrent_mask=jnp.ones((H,)))
    with pytest.raises(ValueError, match=r"`lstm_scan`: `xs` has 4 features but `params` expect 3"):
        lj.lstm_scan(cell, params, jnp.ones((2, T, 4)))
