"""Every recurrence runs inside ``jax.shard_map`` with its type checks on (``check_vma=True``).

Inside ``shard_map`` a batch shard of ``xs`` varies over the mesh's data axis while a zero
initial carry (or a replicated carry the caller passes) varies over nothing, and
``jax.lax.scan`` refuses a carry whose type changes across a step. The library casts every
loop's initial carry to vary as its steps do; these tests run each entry point on a one-device
mesh (the type system is the same at any size) and compare outputs, gradients and forward-mode
derivatives with the same call outside ``shard_map``. The worker in ``test_sharding.py`` checks
real 8-way splits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FLOAT, assert_close, normal, randomize
from jax.sharding import PartitionSpec as P

import lstm_jax as lj
from lstm_jax.core.vma import vary_like, varying_axes
from lstm_jax.sequence.fast import fast_scan

B, T, I, H = 4, 5, 3, 8
LENGTHS = jnp.array([5, 2, 0, 4])
MESH = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _layer(layer):
    return layer.init, lambda p, x: layer.apply(p, x)[1]


def _cell(cell, run=lj.scan, **kw):
    return cell.init, lambda p, x: run(cell, p, x, **kw)[1]


CASES = {
    "LSTM layer (the rule)": _layer(lj.LSTM(H, param_dtype=FLOAT)),
    "LSTM layer, autodiff": _layer(lj.LSTM(H, backward="autodiff", param_dtype=FLOAT)),
    "GRU layer": _layer(lj.GRU(H, param_dtype=FLOAT)),
    "SimpleRNN layer": _layer(lj.SimpleRNN(H, param_dtype=FLOAT)),
    "bidirectional 2-layer LSTM": _layer(
        lj.LSTM(H, num_layers=2, bidirectional=True, param_dtype=FLOAT)
    ),
    "GRU rule": _cell(lj.GRUCell(H, param_dtype=FLOAT), fast_scan),
    "LSTM rule, reversed, checkpointed": _cell(
        lj.LSTMCell(H, param_dtype=FLOAT), lj.lstm_scan, reverse=True, checkpoint_every=2
    ),
    "scan LSTMCell with lengths": _cell(lj.LSTMCell(H, param_dtype=FLOAT), lengths=LENGTHS),
    "scan sLSTMCell": _cell(lj.sLSTMCell(H, num_heads=2, param_dtype=FLOAT)),
    "scan mLSTMCell": _cell(lj.mLSTMCell(H, num_heads=2, param_dtype=FLOAT)),
    "parallel_scan minLSTM": _cell(lj.minLSTMCell(H, param_dtype=FLOAT), lj.parallel_scan),
    "parallel_scan mLSTM": _cell(
        lj.mLSTMCell(H, num_heads=2, param_dtype=FLOAT), lj.parallel_scan, chunk_size=2
    ),
}


SPLIT = P("data")


def per_shard(fn, out_specs=SPLIT):
    """``fn(params, xs)`` with params replicated and the batch split over ``data``."""
    return jax.jit(jax.shard_map(fn, mesh=MESH, in_specs=(P(), SPLIT), out_specs=out_specs))


def _loss(apply):
    return lambda p, x: jnp.sum(jnp.square(apply(p, x)))


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_and_both_modes_of_differentiation_match_outside_shard_map(name):
    init, apply = CASES[name]
    params = randomize(init(jax.random.key(0), I), jax.random.key(1))
    xs = normal(jax.random.key(2), (B, T, I))
    tangent = normal(jax.random.key(3), xs.shape)

    # the loss of a shard is local; its gradient w.r.t. replicated params is summed over
    # shards (JAX transposes the implicit broadcast into a psum), so it is the global one
    grad = jax.grad(_loss(apply), argnums=(0, 1))

    def jvp(p, x):
        return jax.jvp(lambda x: apply(p, x), (x,), (tangent,))[1]

    inside = {
        "ys": per_shard(apply)(params, xs),
        "grad": per_shard(grad, (P(), P("data")))(params, xs),
        "jvp": per_shard(jvp)(params, xs),
    }
    outside = {"ys": apply(params, xs), "grad": grad(params, xs), "jvp": jvp(params, xs)}
    for key in inside:
        for a, b in zip(jax.tree.leaves(inside[key]), jax.tree.leaves(outside[key]), strict=True):
            assert_close(a, b)


def test_a_replicated_carry_passed_in_is_cast_too():
    layer = lj.LSTM(H, param_dtype=FLOAT)
    params = layer.init(jax.random.key(0), I)
    xs = normal(jax.random.key(2), (B, T, I))
    carry = randomize(layer.initial_carry((B,)), jax.random.key(4))

    def run(p, x, c):
        return layer.apply(p, x, c)[1]

    specs = (P(), P("data"), P("data"))
    f = jax.jit(jax.shard_map(run, mesh=MESH, in_specs=specs, out_specs=P("data")))
    assert_close(f(params, xs, carry), run(params, xs, carry))

    # and a carry that is replicated while the batch is split: the same initial state for
    # every example of every shard
    one = jax.tree.map(lambda a: a[:1], carry)
    g = jax.jit(
        jax.shard_map(
            lambda p, x, c: run(p, x, jax.tree.map(lambda a: jnp.repeat(a, x.shape[0], 0), c)),
            mesh=MESH,
            in_specs=(P(), P("data"), P()),
            out_specs=P("data"),
        )
    )
    full = jax.tree.map(lambda a: jnp.repeat(a, B, 0), one)
    assert_close(g(params, xs, one), run(params, xs, full))


def test_outside_shard_map_the_program_has_no_cast():
    # nothing varies outside shard_map, so the cast adds nothing to the lowered program
    layer = lj.LSTM(H, param_dtype=FLOAT)
    params = layer.init(jax.random.key(0), I)
    xs = normal(jax.random.key(2), (B, T, I))
    loss = _loss(lambda p, x: layer.apply(p, x)[1])
    text = jax.jit(jax.grad(loss)).lower(params, xs).as_text()
    assert "pcast" not in text and "pvary" not in text


def test_vary_like_is_the_identity_outside_shard_map():
    tree = {"a": jnp.zeros(3), "b": (jnp.ones((2, 2)),)}
    assert varying_axes(tree) == frozenset()
    assert vary_like(tree, jnp.ones(4)) is tree


def test_vary_like_casts_only_the_missing_axes():
    def inner(x, w):
        zero = jnp.zeros((1, x.shape[-1]), x.dtype)
        cast = vary_like((zero, x), x, w)
        assert varying_axes(zero) == frozenset()
        assert [varying_axes(c) for c in cast] == [frozenset({"data"})] * 2
        assert cast[1] is x  # already varying: untouched
        return x @ w + cast[0]

    f = jax.jit(jax.shard_map(inner, mesh=MESH, in_specs=(P("data"), P()), out_specs=P("data")))
    x, w = np.ones((2, 3), np.float32), np.eye(3, dtype=np.float32)
    np.testing.assert_array_equal(f(x, w), x)


def test_diagnostics_run_inside_shard_map():
    from lstm_jax.diagnostics import gate_statistics, state_gradient_flow

    cell = lj.LSTMCell(H, param_dtype=FLOAT)
    params = randomize(cell.init(jax.random.key(0), I), jax.random.key(1))
    xs = normal(jax.random.key(2), (B, T, I))

    def flow(p, x):
        return state_gradient_flow(cell, p, x).norm  # (B, T)

    def gates(p, x):  # batch means of every shard, averaged over the shards
        return jax.lax.pmean(gate_statistics(cell, p, x)["f"].mean, "data")

    assert_close(per_shard(flow)(params, xs), flow(params, xs))
    want = gate_statistics(cell, params, xs)["f"].mean  # (T,)
    assert_close(per_shard(gates, P())(params, xs), want)


def test_params_split_over_a_mesh_axis_and_inputs_replicated():
    # an ensemble with one member per device: params vary over the axis, the inputs and the
    # zero carry do not, so the carry is cast to follow the params
    layer = lj.GRU(H, param_dtype=FLOAT)
    members = jax.vmap(lambda k: layer.init(k, I))(jax.random.split(jax.random.key(0), 1))
    xs = normal(jax.random.key(2), (B, T, I))

    def member_grads(p, x):  # p: this device's members, (1, ...) leaves
        one = jax.tree.map(lambda a: a[0], p)
        g = jax.grad(lambda q: jnp.sum(layer.apply(q, x)[1] ** 2))(one)
        return jax.tree.map(lambda a: a[None], g)

    f = jax.jit(jax.shard_map(member_grads, mesh=MESH, in_specs=(SPLIT, P()), out_specs=SPLIT))
    got, want = f(members, xs), member_grads(members, xs)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert_close(a, b)
