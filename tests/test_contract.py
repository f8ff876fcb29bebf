"""The contract: a user's own cell runs everywhere a built-in one does; one return order; the
dtype rule; batch-major video; eager calls, and eager derivatives, compile once.

The user cell is a minimal gated unit (Zhou et al. 2016), written as a user would, with only
the three required functions (and the optional ``recurrent_mask`` keyword): no ``output_size``,
``param_shapes``, ``carry_shapes`` or ``params_type``. Its reference is float64 NumPy.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax.core.eager import _jitted
from lstm_jax.diagnostics import input_gradient_flow
from lstm_jax.layers.stacked import StackedRNN

X64 = bool(jax.config.read("jax_enable_x64"))


class MGUParams(NamedTuple):
    w_x: jax.Array  # (I, 2H): forget | candidate
    w_h: jax.Array  # (H, 2H)


@dataclasses.dataclass(frozen=True)
class MGU:
    hidden: int

    def init(self, key, input_size):
        k1, k2 = jax.random.split(key)
        return MGUParams(
            jax.random.normal(k1, (input_size, 2 * self.hidden)) / input_size**0.5,
            jax.random.normal(k2, (self.hidden, 2 * self.hidden)) / self.hidden**0.5,
        )

    def initial_carry(self, batch_shape=()):
        return jnp.zeros((*batch_shape, self.hidden))

    def __call__(self, params, h, x, recurrent_mask=None):
        hm = h if recurrent_mask is None else h * recurrent_mask
        zf, zc = jnp.split(x @ params.w_x, 2, axis=-1)
        hf, hc = jnp.split(hm @ params.w_h, 2, axis=-1)
        f = jax.nn.sigmoid(zf + hf)
        h = (1 - f) * h + f * jnp.tanh(zc + f * hc)
        return h, h


def mgu_ref(params, xs, lengths=None, reverse=False):
    """float64 NumPy MGU over ``(B, T, I)`` with lengths, written from the equations."""
    w_x, w_h = (np.asarray(a, np.float64) for a in params)
    B, T, _ = xs.shape
    H = w_h.shape[0]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    ys, hs = np.zeros((B, T, H)), np.zeros((B, H))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for b in range(B):
        h = np.zeros(H)
        steps = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        for t in steps:
            z, r = np.asarray(xs[b, t], np.float64) @ w_x, h @ w_h
            f = sig(z[:H] + r[:H])
            h = (1 - f) * h + f * np.tanh(z[H:] + f * r[H:])
            ys[b, t] = h
        hs[b] = h
    return hs, ys


CELL = MGU(5)
PARAMS = CELL.init(jax.random.key(0), 3)
XS = jax.random.normal(jax.random.key(1), (4, 7, 3))
LENGTHS = jnp.array([7, 4, 1, 0])


@pytest.mark.parametrize("reverse", [False, True])
def test_user_cell_through_scan_with_lengths_and_reverse(reverse):
    carry, ys = lj.scan(CELL, PARAMS, XS, lengths=LENGTHS, reverse=reverse)
    want_h, want_ys = mgu_ref(PARAMS, XS, LENGTHS, reverse)
    np.testing.assert_allclose(ys, want_ys, atol=1e-5)
    np.testing.assert_allclose(carry, want_h, atol=1e-5)


def test_user_cell_in_a_bidirectional_stack_with_dropout_and_grad():
    rnn = StackedRNN(CELL, num_layers=2, bidirectional=True, dropout=0.2, recurrent_dropout=0.2)
    params = rnn.init(jax.random.key(2), 3)
    assert params[1].forward.w_x.shape == (10, 10)  # layer 2 reads [forward, backward] = 2 * 5
    carry, ys = rnn.apply(params, XS, lengths=LENGTHS)
    assert ys.shape == (4, 7, 10) and carry[1].backward.shape == (4, 5)
    # layer 1's forward half is the plain cell
    one = StackedRNN(CELL, bidirectional=True)
    _, ys1 = one.apply(params[:1], XS, lengths=LENGTHS)
    np.testing.assert_allclose(ys1[..., :5], mgu_ref(params[0].forward, XS, LENGTHS)[1], atol=1e-5)
    np.testing.assert_allclose(
        ys1[..., 5:], mgu_ref(params[0].backward, XS, LENGTHS, reverse=True)[1], atol=1e-5
    )
    _, noisy = rnn.apply(params, XS, lengths=LENGTHS, key=jax.random.key(3))
    assert float(jnp.max(jnp.abs(noisy - ys))) > 1e-3
    grads = jax.grad(lambda p: jnp.sum(rnn.apply(p, XS, key=jax.random.key(3))[1] ** 2))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_user_cell_jit_vmap_and_diagnostics():
    f = jax.jit(lambda p, x: lj.scan(CELL, p, x)[1])
    np.testing.assert_allclose(f(PARAMS, XS), jax.vmap(lambda x: f(PARAMS, x))(XS), atol=1e-6)
    flow = input_gradient_flow(CELL, PARAMS, XS)
    assert flow.norm.shape == (4, 7) and bool(jnp.all(jnp.isfinite(flow.norm)))


def test_user_cell_wrong_params_are_reported_with_the_expected_shapes():
    with pytest.raises(ValueError, match=r"`params\.w_x` must have shape \(4, 10\).*MGU"):
        lj.scan(CELL, PARAMS, jnp.ones((2, 5, 4)))
    with pytest.raises(TypeError, match=r"`cell` must be a cell .* got str"):
        lj.scan("lstm", PARAMS, XS)
    with pytest.raises(TypeError, match=r"looks like a layer: call its `apply`"):
        lj.scan(lj.LSTM(4), PARAMS, XS)


def test_cell_protocol_is_a_runtime_checkable_type():
    for cell in (CELL, lj.LSTMCell(3), lj.GRUCell(3), lj.SimpleRNNCell(3), lj.ConvLSTMCell(3)):
        assert isinstance(cell, lj.Cell)
    assert not isinstance(lj.LSTM(3), lj.Cell)


def test_batch_major_video_is_scanned_over_time():
    cell = lj.ConvLSTMCell(4)
    params = cell.init(jax.random.key(0), 2)
    frames = jax.random.normal(jax.random.key(1), (3, 5, 6, 6, 2))  # (B, T, Hs, Ws, C)
    lengths = jnp.array([5, 2, 0])
    c_bm, y_bm = lj.scan(cell, params, frames, lengths=lengths)
    c_tm, y_tm = lj.scan(cell, params, jnp.moveaxis(frames, 1, 0), lengths=lengths, time_major=True)
    assert y_bm.shape == (3, 5, 6, 6, 4)
    np.testing.assert_allclose(y_bm, jnp.moveaxis(y_tm, 0, 1), atol=1e-6)
    np.testing.assert_allclose(c_bm.h, c_tm.h, atol=1e-6)
    # one frame at a time by hand
    carry = cell.initial_carry((3, 6, 6))
    for t in range(5):
        new, _ = cell(params, carry, frames[:, t])
        ok = (t < lengths)[:, None, None, None]
        carry = jax.tree.map(lambda n, o, ok=ok: jnp.where(ok, n, o), new, carry)
    np.testing.assert_allclose(c_bm.c, carry.c, atol=1e-5)


def test_layers_and_models_return_carry_first():
    rnn = lj.LSTM(4)
    params = rnn.init(jax.random.key(0), 3)
    carry, ys = rnn.apply(params, XS)
    assert isinstance(carry, tuple) and ys.shape == (4, 7, 4)
    stepped, y = rnn.step(params, rnn.initial_carry((4,)), XS[:, 0])
    np.testing.assert_allclose(y, ys[:, 0], atol=1e-6)


def test_carry_of_the_wrong_dtype_is_a_clear_type_error():
    cell = lj.LSTMCell(4)
    params = cell.init(jax.random.key(0), 3)
    bad = jax.tree.map(lambda a: a.astype(jnp.bfloat16), cell.initial_carry((4,)))
    with pytest.raises(TypeError, match=r"`scan`: `carry` has the wrong dtype.*bfloat16.*float32"):
        lj.scan(cell, params, XS, bad)


def test_bf16_products_give_y_and_carry_h_one_dtype():
    cell = lj.LSTMCell(4, dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), 3)
    carry, y = cell(params, cell.initial_carry((4,)), XS[:, 0])
    assert y.dtype == carry.h.dtype == jnp.float32
    head = lj.Dense(2, dtype=jnp.bfloat16)
    assert head.apply(head.init(jax.random.key(0), 4), y).dtype == jnp.float32


def test_second_eager_apply_reuses_the_compiled_computation():
    rnn = lj.LSTM(6, num_layers=2, bidirectional=True)
    params = rnn.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    compiled = _jitted(StackedRNN._apply)
    rnn.apply(params, xs)
    before = compiled._cache_size()
    for _ in range(3):
        rnn.apply(params, xs)
    assert compiled._cache_size() == before  # no new compilation for the same config and shapes
    rnn.apply(params, xs[:, :4])  # a new length is a new shape: one more entry
    assert compiled._cache_size() == before + 1


def _eager_calls(name):
    """A loss of params through one public entry point, its params and inputs."""
    xs, key = jax.random.normal(jax.random.key(1), (2, 5, 3)), jax.random.key(0)
    if name in ("scan", "lstm_scan"):
        cell = lj.LSTMCell(4)
        run = getattr(lj, name)
        return (lambda p: jnp.sum(run(cell, p, xs)[1] ** 2)), cell.init(key, 3)
    if name == "parallel_scan":
        cell = lj.minLSTMCell(4)
        return (lambda p: jnp.sum(lj.parallel_scan(cell, p, xs)[1] ** 2)), cell.init(key, 3)
    backward = name.split("-")[1]
    rnn = lj.LSTM(4, num_layers=2, bidirectional=True, backward=backward)
    return (lambda p: jnp.sum(rnn.apply(p, xs)[1] ** 2)), rnn.init(key, 3)


@pytest.mark.parametrize(
    "name", ["scan", "lstm_scan", "parallel_scan", "LSTM-fast", "LSTM-autodiff"]
)
def test_eager_grad_jvp_and_vmap_compile_once(name):
    """An eager ``jax.grad`` (``jvp``, ``vmap``) of a layer in a loop, as in a notebook without
    ``jit``: the second call compiles nothing. Each call used to trace and compile the loops
    again (seconds per call) and keep the compiled code mapped until the process ran out of
    memory mappings."""
    loss, params = _eager_calls(name)
    grad = jax.grad(loss)
    jvp = lambda p: jax.jvp(loss, (p,), (p,))  # noqa: E731
    batched = jax.vmap(loss)
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
    calls = [lambda: grad(params), lambda: jvp(params), lambda: batched(stacked)]
    for call in calls:
        jax.block_until_ready(call())  # the first call of each compiles
    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        for _ in range(2):
            for call in calls:
                jax.block_until_ready(call())
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []
    np.testing.assert_allclose(
        jax.tree.leaves(grad(params))[0], jax.tree.leaves(jax.jit(grad)(params))[0], rtol=1e-5
    )


@pytest.mark.x64
@pytest.mark.skipif(not X64, reason="float64 needs JAX_ENABLE_X64=1")
def test_float64_end_to_end():
    cell = lj.LSTMCell(5, param_dtype=jnp.float64)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 6, 3), jnp.float64)
    carry, ys = lj.scan(cell, params, xs)
    assert ys.dtype == carry.h.dtype == carry.c.dtype == jnp.float64
    rnn = lj.LSTM(5, num_layers=2, bidirectional=True, param_dtype=jnp.float64)
    rp = rnn.init(jax.random.key(2), 3)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(rnn.apply(rp, xs)))
    # float32 params with float64 inputs compute in float64 too (jnp's promotion), no downcast
    p32 = lj.LSTMCell(5).init(jax.random.key(0), 3)
    _, y_mixed = lj.scan(lj.LSTMCell(5), p32, xs)
    stack = lj.LSTM(5, num_layers=2, bidirectional=True)
    carry, ys = stack.apply(stack.init(jax.random.key(0), 3), xs)  # float32 params, f64 inputs
    assert ys.dtype == carry[1].backward.c.dtype == jnp.float64
    assert y_mixed.dtype == jnp.float64
    want = lj.scan(cell, jax.tree.map(lambda a: a.astype(jnp.float64), p32), xs)[1]
    np.testing.assert_allclose(y_mixed, want, rtol=1e-13, atol=1e-13)
    with pytest.raises(TypeError, match=r"carry\.h is float32 but the step returns float64"):
        lj.scan(lj.LSTMCell(5), p32, xs, lj.LSTMCell(5).initial_carry((2,)))


def test_readme_user_cell_runs_as_written():
    from test_readme import block, run

    ns = run(block("import dataclasses\nimport jax, jax.numpy as jnp\nimport lstm_jax as lj"))
    assert ns["ys"].shape == (4, 10, 32)
    assert not bool(jnp.any(ns["ys"][3]))  # length 0: all padding
    mgu = ns["MGU"](5)
    params = tuple(mgu.init(jax.random.key(0), 3))
    np.testing.assert_allclose(lj.scan(mgu, params, XS)[1], mgu_ref(params, XS)[1], atol=1e-5)
