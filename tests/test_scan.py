"""`scan` against a Python loop of NumPy steps, with lengths, reverse, layouts and batch shapes."""

import functools

import jax
import jax.numpy as jnp
import jax.test_util  # noqa: F401  (check_grads)
import numpy as np
import pytest
from helpers import FLOAT, assert_close, normal, randomize
from reference import gru_step, lstm_step, run_sequence

import lstm_jax as lj


def _numpy_step(cell, params):
    if isinstance(cell, lj.LSTMCell):
        step = functools.partial(
            lstm_step, params, hidden_size=cell.hidden_size, proj=cell.proj_size is not None
        )
        return lambda carry, x: step(*carry, x)
    return lambda h, x: gru_step(params, h, x, hidden_size=cell.hidden_size)


def _np_carry(cell, carry, idx):
    if isinstance(carry, lj.LSTMState):
        return (np.asarray(carry.h, np.float64)[idx], np.asarray(carry.c, np.float64)[idx])
    return np.asarray(carry, np.float64)[idx]


@pytest.mark.x64
@pytest.mark.parametrize(
    "cell",
    [
        lj.LSTMCell(4, param_dtype=FLOAT),
        lj.LSTMCell(5, proj_size=2, param_dtype=FLOAT),
        lj.GRUCell(4, param_dtype=FLOAT),
    ],
    ids=lambda c: c.short_repr(),
)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("time_major", [False, True])
def test_scan_matches_python_loop(cell, reverse, with_lengths, time_major):
    B, T, I = 3, 6, 2
    params = randomize(cell.init(jax.random.key(0), I), jax.random.key(1))
    xs = normal(jax.random.key(2), (B, T, I))
    carry0 = jax.tree.map(
        lambda s: normal(jax.random.key(3), s),
        cell.carry_shapes((B,)),
        is_leaf=lambda s: type(s) is tuple,
    )
    lengths = jnp.array([6, 3, 0]) if with_lengths else None
    carry, ys = lj.scan(
        cell,
        params,
        jnp.swapaxes(xs, 0, 1) if time_major else xs,
        carry0,
        lengths=lengths,
        reverse=reverse,
        time_major=time_major,
    )
    if time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    step = _numpy_step(cell, params)
    for b in range(B):
        ref_carry, ref_ys = run_sequence(
            step,
            _np_carry(cell, carry0, b),
            np.asarray(xs[b], np.float64),
            None if lengths is None else lengths[b],
            reverse,
        )
        assert_close(ys[b], ref_ys)
        for leaf, ref in zip(jax.tree.leaves(carry), jax.tree.leaves(ref_carry), strict=True):
            assert_close(leaf[b], ref)


@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 3)], ids=str)
def test_any_leading_batch_dims(batch_shape):
    cell = lj.LSTMCell(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (*batch_shape, 5, 2))
    carry, ys = lj.scan(cell, params, xs)
    assert ys.shape == (*batch_shape, 5, 3) and carry.c.shape == (*batch_shape, 3)
    flat = xs.reshape((-1, 5, 2))
    _, ys_flat = lj.scan(cell, params, flat)
    np.testing.assert_allclose(ys.reshape(ys_flat.shape), ys_flat, rtol=1e-6, atol=1e-6)


def test_jit_vmap_and_python_loop_agree():
    cell = lj.LSTMCell(4)
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (5, 7, 3), jnp.float32)  # the params' dtype
    lengths = jnp.array([7, 1, 4, 0, 6])
    eager = lj.scan(cell, params, xs, lengths=lengths)
    jitted = jax.jit(functools.partial(lj.scan, cell))(params, xs, lengths=lengths)
    vmapped = jax.vmap(lambda x, n: lj.scan(cell, params, x, lengths=n))(xs, lengths)
    carry = cell.initial_carry((5,))
    outs = []
    for t in range(7):
        new, y = cell(params, carry, xs[:, t])
        ok = (t < lengths)[:, None]
        carry = jax.tree.map(lambda n, o, ok=ok: jnp.where(ok, n, o), new, carry)
        outs.append(jnp.where(ok, y, 0.0))
    loop = (carry, jnp.stack(outs, 1))
    for other in (jitted, vmapped, loop):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), eager, other
        )


@pytest.mark.parametrize("unroll", [1, 3, True])
def test_unroll_does_not_change_results(unroll):
    cell = lj.GRUCell(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 7, 3))
    a = lj.scan(cell, params, xs)
    b = lj.scan(cell, params, xs, unroll=unroll)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a, b)


@pytest.mark.x64
@pytest.mark.parametrize(
    "cell", [lj.LSTMCell(3), lj.GRUCell(3), lj.SimpleRNNCell(3)], ids=lambda c: c.short_repr()
)
def test_padded_example_equals_unpadded(cell):
    params = randomize(cell.init(jax.random.key(0), 2), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (4, 2))
    padded = jnp.concatenate([x, 100 * jnp.ones((5, 2))])[None]  # (1, 9, 2): garbage padding
    for reverse in (False, True):
        c_pad, y_pad = lj.scan(cell, params, padded, lengths=jnp.array([4]), reverse=reverse)
        c_ref, y_ref = lj.scan(cell, params, x[None], reverse=reverse)
        np.testing.assert_allclose(y_pad[:, :4], y_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(y_pad[:, 4:], 0.0)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), c_pad, c_ref
        )


def test_reverse_equals_flipped_forward():
    cell = lj.LSTMCell(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 6, 2))
    c_rev, y_rev = lj.scan(cell, params, xs, reverse=True)
    c_fwd, y_fwd = lj.scan(cell, params, jnp.flip(xs, 1))
    np.testing.assert_allclose(y_rev, jnp.flip(y_fwd, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_rev.c, c_fwd.c, rtol=1e-5, atol=1e-6)


def test_lengths_out_of_range_under_jit_give_nan_not_silent_numbers():
    cell = lj.LSTMCell(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.ones((2, 4, 2))
    _, ys = jax.jit(functools.partial(lj.scan, cell))(params, xs, lengths=jnp.array([2, 9]))
    assert bool(jnp.all(jnp.isnan(ys)))
    _, ys = jax.jit(functools.partial(lj.scan, cell))(params, xs, lengths=jnp.array([2, 4]))
    assert not bool(jnp.any(jnp.isnan(ys)))


@pytest.mark.x64
@pytest.mark.parametrize(
    "cell",
    [
        lj.LSTMCell(3, peephole=True, proj_size=2, layer_norm=True, param_dtype=FLOAT),
        lj.GRUCell(3, param_dtype=FLOAT),
        lj.GRUCell(3, reset_after=False, param_dtype=FLOAT),
        lj.SimpleRNNCell(3, param_dtype=FLOAT),
    ],
    ids=lambda c: c.short_repr(),
)
def test_check_grads_through_scan(cell):
    params = randomize(
        cell.init(
            jax.random.key(0),
            2,
        ),
        jax.random.key(1),
        0.3,
    )
    xs = jax.random.normal(jax.random.key(2), (2, 4, 2), FLOAT)
    lengths = jnp.array([4, 2])

    def f(p, x):
        carry, ys = lj.scan(cell, p, x, lengths=lengths)
        return jnp.sum(ys**2) + jnp.sum(jax.tree.leaves(carry)[0])

    eps = 1e-4 if FLOAT == jnp.float64 else 1e-2
    tol = 1e-5 if FLOAT == jnp.float64 else 5e-2
    jax.test_util.check_grads(
        f,
        (params, xs),
        order=2 if FLOAT == jnp.float64 else 1,
        modes=["rev"],
        eps=eps,
        atol=tol,
        rtol=tol,
    )


def test_unroll_none_picks_per_backend(monkeypatch):
    """unroll=None is 1 on CPU and 8 where JAX's default backend is a GPU; results agree."""
    from lstm_jax.sequence.scan import resolve_unroll

    assert resolve_unroll(None) == 1 and resolve_unroll(3) == 3
    cell = lj.LSTMCell(8)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 11, 3))
    lengths = jnp.array([11, 4])
    _, on_cpu = lj.lstm_scan(cell, params, xs, lengths=lengths)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_unroll(None) == 8
    jaxpr = str(jax.make_jaxpr(lambda x: lj.scan(cell, params, x)[1])(xs))
    assert "unroll=8" in jaxpr
    _, as_on_gpu = lj.lstm_scan(cell, params, xs, lengths=lengths)
    np.testing.assert_allclose(as_on_gpu, on_cpu, rtol=1e-6, atol=1e-6)
