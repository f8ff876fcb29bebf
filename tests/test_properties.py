"""Property tests (hypothesis): shapes, lengths and dtypes; jit/vmap/grad invariance."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_jax as lj

pytestmark = pytest.mark.slow

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True)

cells = st.sampled_from(
    [lj.LSTMCell(3), lj.LSTMCell(4, proj_size=2, peephole=True), lj.GRUCell(3), lj.SimpleRNNCell(2)]
)
batch_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


@st.composite
def problems(draw):
    cell = draw(cells)
    batch = draw(batch_shapes)
    T = draw(st.integers(1, 6))
    I = draw(st.integers(1, 3))
    lengths = None
    if draw(st.booleans()):
        lengths = np.asarray(
            draw(
                st.lists(
                    st.integers(0, T), min_size=int(np.prod(batch)), max_size=int(np.prod(batch))
                )
            )
        ).reshape(batch)
    return (
        cell,
        batch,
        T,
        I,
        lengths,
        draw(st.booleans()),
        draw(st.sampled_from([jnp.float32, jnp.bfloat16])),
    )


@SETTINGS
@given(problems())
def test_output_shapes_and_dtypes(problem):
    cell, batch, T, I, lengths, reverse, dtype = problem
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (*batch, T, I)).astype(dtype)
    carry, ys = lj.scan(
        cell, params, xs, lengths=None if lengths is None else jnp.asarray(lengths), reverse=reverse
    )
    assert ys.shape == (*batch, T, cell.output_size)
    assert ys.dtype == jnp.float32  # params are f32: inputs are cast to the compute dtype
    for leaf, shape in zip(
        jax.tree.leaves(carry),
        jax.tree.leaves(cell.carry_shapes(batch), is_leaf=lambda s: type(s) is tuple),
        strict=True,
    ):
        assert leaf.shape == shape
    assert bool(jnp.all(jnp.isfinite(ys)))
    if lengths is not None:
        mask = np.arange(T)[None] >= np.asarray(lengths).reshape(-1, 1)
        np.testing.assert_array_equal(np.asarray(ys).reshape(-1, T, cell.output_size)[mask], 0.0)


@SETTINGS
@given(problems())
def test_jit_and_vmap_invariance(problem):
    cell, batch, T, I, lengths, reverse, _ = problem
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (*batch, T, I))
    ln = None if lengths is None else jnp.asarray(lengths)
    run = functools.partial(lj.scan, cell, reverse=reverse)
    eager = run(params, xs, lengths=ln)
    jitted = jax.jit(run)(params, xs, lengths=ln)
    flat_x = xs.reshape((-1, T, I))
    if ln is None:
        vm = jax.vmap(lambda x: run(params, x))(flat_x)
    else:
        vm = jax.vmap(lambda x, n: run(params, x, lengths=n))(flat_x, ln.reshape(-1))
    vm = jax.tree.map(lambda a: a.reshape(batch + a.shape[1:]), vm)
    for other in (jitted, vm):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), eager, other
        )


@SETTINGS
@given(problems())
def test_grad_invariance_and_padding_gets_no_gradient(problem):
    cell, batch, T, I, lengths, reverse, _ = problem
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (*batch, T, I))
    ln = None if lengths is None else jnp.asarray(lengths)

    def loss(p, x):
        return jnp.sum(lj.scan(cell, p, x, lengths=ln, reverse=reverse)[1] ** 2)

    g_eager = jax.grad(loss, argnums=(0, 1))(params, xs)
    g_jit = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_eager, g_jit
    )
    if ln is not None:
        mask = np.arange(T)[None] >= np.asarray(lengths).reshape(-1, 1)
        np.testing.assert_array_equal(np.asarray(g_eager[1]).reshape(-1, T, I)[mask], 0.0)
