"""The fast paths (one ``jax.custom_jvp`` per built-in cell) equal autodiff through ``scan``.

Every derivative is compared with the same derivative of :func:`lstm_jax.scan`, which JAX
differentiates step by step: reverse mode (``grad``), forward mode (``jvp``, ``jacfwd``),
second order (Hessian-vector products), under ``jax.checkpoint`` and ``vmap``, with lengths,
reversal, recurrent masks (and their own gradient) and ``checkpoint_every``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from helpers import FLOAT, X64, assert_close, normal, randomize
from jax.test_util import check_grads

import lstm_jax as lj
from lstm_jax.sequence import fast
from lstm_jax.sequence.fast import GRU_RULE_MIN_HIDDEN_CPU, fast_scan, fast_supported, rule_pays

I, H, T, B = 3, 4, 6, 3

CELLS = {
    "lstm": lambda **kw: lj.LSTMCell(H, param_dtype=FLOAT, **kw),
    "lstm-1997-nobias": lambda **kw: lj.LSTMCell(
        H, param_dtype=FLOAT, forget_gate=False, use_bias=False, **kw
    ),
    "gru": lambda **kw: lj.GRUCell(H, param_dtype=FLOAT, **kw),
    "gru-reset-before": lambda **kw: lj.GRUCell(H, param_dtype=FLOAT, reset_after=False, **kw),
    "gru-nobias": lambda **kw: lj.GRUCell(H, param_dtype=FLOAT, use_bias=False, **kw),
    "rnn": lambda **kw: lj.SimpleRNNCell(H, param_dtype=FLOAT, **kw),
}
LENGTHS = jnp.array([6, 2, 0])


def _setup(cell, seed=0, input_size=I):
    keys = jax.random.split(jax.random.key(seed), 5)
    params = randomize(cell.init(keys[0], input_size), keys[1])
    xs = normal(keys[2], (B, T, input_size))
    carry = randomize(cell.initial_carry((B,)), keys[3])
    mask = jax.random.uniform(keys[4], (B, H), FLOAT, 0.5, 1.5)
    return params, xs, carry, mask


def _loss(run, cell, kw):
    """A loss of (params, xs, carry, mask) that reads every output and the final carry."""

    def loss(params, xs, carry, mask):
        final, ys = run(cell, params, xs, carry, recurrent_mask=mask, **kw)
        leaves = jax.tree.leaves(final)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.cos(a) * a) for a in leaves)

    return loss


def _pair(cell, kw, fast_kw=None):
    return _loss(lambda *a, **k: fast_scan(*a, **k, **(fast_kw or {})), cell, kw), _loss(
        lj.scan, cell, kw
    )


def _close_trees(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert_close(x, y)


VARIANTS = [
    {},
    {"lengths": LENGTHS, "reverse": True},
    {"lengths": LENGTHS, "time_major": False, "unroll": 2},
]


def _derivatives(loss, args, direction):
    """Value, gradient, JVP and Hessian-vector product of ``loss`` at ``args``, in one jit."""

    @jax.jit
    def run(args, direction):
        grad = jax.grad(lambda *a: loss(*a), argnums=(0, 1, 2, 3))
        value, jvp = jax.jvp(lambda *a: loss(*a), args, direction)
        return value, grad(*args), jvp, jax.jvp(grad, args, direction)[1]

    return run(args, direction)


def _cases():
    """Every cell with lengths and reverse (the quick run keeps one LSTM, GRU and RNN case)."""
    ids = ["plain", "lengths-reverse", "lengths-unroll"]
    for name in CELLS:
        for kw, id_ in zip(VARIANTS, ids, strict=True):
            if kw.get("unroll") and name not in ("lstm", "gru"):
                continue  # unroll: one LSTM and one GRU case is enough
            quick = id_ == "lengths-reverse" and name in ("lstm", "gru", "rnn")
            marks = () if quick else (pytest.mark.slow,)
            yield pytest.param(name, kw, id=f"{name}-{id_}", marks=marks)


@pytest.mark.x64
@pytest.mark.parametrize("name, kw", list(_cases()))
def test_outputs_grad_jvp_and_hvp_equal_autodiff(name, kw):
    cell = CELLS[name]()
    args = _setup(cell, seed=len(name))
    direction = randomize(args, jax.random.key(99))
    fast, ref = _pair(cell, kw)
    _close_trees(_derivatives(fast, args, direction), _derivatives(ref, args, direction))


@pytest.mark.x64
@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "gru", "gru-reset-before", "rnn"])
def test_jacfwd_equals_jacrev_and_autodiff(name):
    cell = CELLS[name]()
    params, xs, carry, _ = _setup(cell, seed=3)

    def ys(run, xs):
        return run(cell, params, xs, carry, lengths=LENGTHS)[1]

    fwd = jax.jit(jax.jacfwd(lambda x: ys(fast_scan, x)))(xs)
    _close_trees(fwd, jax.jit(jax.jacrev(lambda x: ys(fast_scan, x)))(xs))
    _close_trees(fwd, jax.jit(jax.jacfwd(lambda x: ys(lj.scan, x)))(xs))


@pytest.mark.slow
# 4 leaves a partial last segment (and runs reversed); 6 = T: unsegmented
@pytest.mark.parametrize(
    "name, k",
    [("lstm", 1), ("lstm", 4), ("lstm", 6), ("gru", 4), ("gru-reset-before", 1), ("rnn", 4)],
)
def test_checkpoint_every_equals_autodiff_in_both_modes(name, k):
    cell = CELLS[name]()
    args = _setup(cell, seed=5)
    kw = {"lengths": LENGTHS, "reverse": k == 4}
    fast, ref = _pair(cell, kw, {"checkpoint_every": k})
    _close_trees(
        jax.jit(jax.value_and_grad(fast, argnums=(0, 1, 2, 3)))(*args),
        jax.jit(jax.value_and_grad(ref, argnums=(0, 1, 2, 3)))(*args),
    )
    direction = randomize(args, jax.random.key(7))
    _close_trees(
        jax.jit(lambda *a: jax.jvp(fast, a, direction))(*args),
        jax.jit(lambda *a: jax.jvp(ref, a, direction))(*args),
    )


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_under_jax_checkpoint_and_vmap(name):
    cell = CELLS[name]()
    params, xs, carry, _ = _setup(cell, seed=6)

    def loss(run, p, x):
        return jnp.sum(run(cell, p, x)[1] ** 2)

    remat = jax.jit(jax.grad(jax.checkpoint(lambda p: loss(fast_scan, p, xs))))
    _close_trees(remat(params), jax.jit(jax.grad(lambda p: loss(lj.scan, p, xs)))(params))
    per_example = jax.jit(jax.vmap(jax.grad(lambda x: loss(fast_scan, params, x))))(xs)
    _close_trees(per_example, jax.jit(jax.grad(lambda x: loss(lj.scan, params, x)))(xs))


@pytest.mark.parametrize("shape", [(T, I), (T, 2, 3, I)])  # no batch axis; two, time-major
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_batch_shapes_and_time_major(name, shape):
    cell = CELLS[name]()
    params = randomize(cell.init(jax.random.key(0), I), jax.random.key(1))
    xs, tm = normal(jax.random.key(2), shape), len(shape) > 2

    def loss(run, p):
        final, ys = run(cell, p, xs, time_major=tm)
        return jnp.sum(ys**3) + sum(jnp.sum(a) for a in jax.tree.leaves(final))

    _close_trees(
        jax.jit(jax.value_and_grad(lambda p: loss(fast_scan, p)))(params),
        jax.jit(jax.value_and_grad(lambda p: loss(lj.scan, p)))(params),
    )


@pytest.mark.x64
@pytest.mark.slow
@pytest.mark.skipif(not X64, reason="finite differences need float64")
@pytest.mark.parametrize("name", ["lstm", "gru", "gru-reset-before", "rnn"])
def test_check_grads_against_finite_differences(name):
    cell = CELLS[name]()
    params, xs, carry, mask = _setup(cell, seed=8)

    def f(params, xs, carry, mask):
        return fast_scan(cell, params, xs, carry, lengths=LENGTHS, recurrent_mask=mask)

    # 1e-4: second-order finite differences of the RNN miss by 2.5e-5 relative here, while its
    # reverse-over-reverse derivatives equal autodiff through `scan` to 1e-14
    check_grads(f, (params, xs, carry, mask), order=2, modes=["fwd", "rev"], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("make", [lj.LSTM, lj.GRU, lj.SimpleRNN])
def test_layers_take_the_fast_path_by_default_and_match_autodiff(make, monkeypatch):
    # The GRU's rule is the default on CPU only from GRU_RULE_MIN_HIDDEN_CPU units (see the
    # next test); lowered here so that the layers' use of the GRU rule is tested at this width.
    monkeypatch.setattr("lstm_jax.sequence.fast.GRU_RULE_MIN_HIDDEN_CPU", 1)
    jax.clear_caches()  # layers trace once per config and shapes: drop traces made before
    kw = dict(num_layers=2, bidirectional=True, dropout=0.2, recurrent_dropout=0.3)
    xs, lengths = normal(jax.random.key(2), (4, T, I)), jnp.array([6, 3, 1, 0])
    fast = make(H, **kw, param_dtype=FLOAT)
    auto = make(H, **kw, param_dtype=FLOAT, backward="autodiff")
    assert fast.backward == "fast"
    params = randomize(fast.init(jax.random.key(0), I), jax.random.key(1))

    def loss(rnn, params, xs):
        carry, ys = rnn.apply(params, xs, lengths=lengths, key=jax.random.key(3))
        return jnp.sum(ys**2) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(carry))

    assert "custom_jvp_call" in str(jax.make_jaxpr(lambda p: loss(fast, p, xs))(params))
    assert "custom_jvp_call" not in str(jax.make_jaxpr(lambda p: loss(auto, p, xs))(params))
    derivs = jax.jit(jax.value_and_grad(loss, argnums=(1, 2)), static_argnums=0)
    _close_trees(derivs(fast, params, xs), derivs(auto, params, xs))


def test_the_default_takes_the_gru_rule_from_its_threshold_width_on_cpu():
    """The GRU's rule is the layers' default from ``GRU_RULE_MIN_HIDDEN_CPU`` units on CPU (and
    at every width elsewhere); narrower GRUs take autodiff through ``scan``, measured faster."""
    xs = jnp.ones((2, 3, 4), jnp.float32)
    for width in (GRU_RULE_MIN_HIDDEN_CPU - 1, GRU_RULE_MIN_HIDDEN_CPU):
        rnn = lj.GRU(width)
        params = rnn.init(jax.random.key(0), 4)
        jaxpr = str(jax.make_jaxpr(lambda p, r=rnn: jnp.sum(r.apply(p, xs)[1]))(params))
        want = width >= GRU_RULE_MIN_HIDDEN_CPU or jax.default_backend() != "cpu"
        assert ("custom_jvp_call" in jaxpr) == want == rule_pays(rnn.cell)
    assert rule_pays(lj.LSTMCell(4)) and rule_pays(lj.SimpleRNNCell(4))


def _record_paths(monkeypatch):
    """Make the layers log which path each of their recurrences traced: "rule" or "scan"."""
    import lstm_jax.layers.stacked as stacked

    log = []
    rule, plain = stacked.fast_scan, stacked.scan

    def logged(name, fn):
        return lambda *a, **k: (log.append(name), fn(*a, **k))[1]

    monkeypatch.setattr(stacked, "fast_scan", logged("rule", rule))
    monkeypatch.setattr(stacked, "scan", logged("scan", plain))
    jax.clear_caches()  # layers trace once per config and shapes: drop traces made before
    return log


@pytest.mark.parametrize("make", [lj.LSTM, lj.GRU, lj.SimpleRNN])
def test_forward_mode_takes_scan_and_reverse_mode_the_rule_on_cpu(make, monkeypatch):
    """A layer under ``jax.jvp``/``jax.jacfwd`` runs ``scan`` on CPU (whose one-loop forward
    mode measured faster, ``fast.FORWARD_MODE_RULE_CPU``), under ``jax.grad`` the rule; the
    derivatives are the same either way."""
    monkeypatch.setattr("lstm_jax.sequence.fast.GRU_RULE_MIN_HIDDEN_CPU", 1)
    log = _record_paths(monkeypatch)
    rnn = make(H, num_layers=2, param_dtype=FLOAT)
    params = randomize(rnn.init(jax.random.key(0), I), jax.random.key(1))
    xs = normal(jax.random.key(2), (B, T, I))
    dp = randomize(params, jax.random.key(3))

    def loss(p, x):
        return jnp.sum(jnp.sin(rnn.apply(p, x)[1]))

    forward = "scan" if jax.default_backend() == "cpu" else "rule"
    cases = {
        "jit(jvp)": (lambda: jax.jit(lambda p, x: jax.jvp(loss, (p, x), (dp, x)))(params, xs)),
        "jvp": lambda: jax.jvp(loss, (params, xs), (dp, xs)),
        "jvp of the input": lambda: jax.jvp(lambda x: loss(params, x), (xs,), (xs,)),
        "jacfwd": lambda: jax.jacfwd(loss, argnums=1)(params, xs),
        "grad": lambda: jax.grad(loss, argnums=(0, 1))(params, xs),
        "jit(grad)": lambda: jax.jit(jax.grad(loss))(params, xs),
        "jvp of a jit": lambda: jax.jvp(jax.jit(loss), (params, xs), (dp, xs)),
        "hvp": lambda: jax.jvp(jax.grad(loss), (params, xs), (dp, xs)),
        "no derivative": lambda: loss(params, xs),
    }
    want = dict.fromkeys(["jit(jvp)", "jvp", "jvp of the input", "jacfwd"], forward)
    for name, run in cases.items():
        log.clear()
        jax.clear_caches()
        run()
        # reverse mode, a Hessian-vector product (reverse inside forward) and a jit between
        # the jvp and the layer (which hides the jvp: the layer is traced, then
        # differentiated) keep the rule, correct in both modes as tested above
        assert set(log) == {want.get(name, "rule")}, name
    # the same tangent as the rule's own jvp (reached by hiding the jvp behind a jit)
    got = jax.jvp(loss, (params, xs), (dp, xs))
    rule = jax.jvp(jax.jit(loss), (params, xs), (dp, xs))
    _close_trees(got, rule)


@pytest.mark.parametrize("make", [lj.LSTM, lj.GRU, lj.SimpleRNN])
def test_forward_mode_through_scan_keeps_every_layer_option(make, monkeypatch):
    """The swap to ``scan`` under a ``jvp`` keeps what the layer was asked for: two
    bidirectional layers, lengths, a carry, dropout and recurrent dropout from a key (the same
    masks), time-major input. The tangent equals the rule's, and the log shows both paths ran."""
    monkeypatch.setattr("lstm_jax.sequence.fast.GRU_RULE_MIN_HIDDEN_CPU", 1)
    log = _record_paths(monkeypatch)
    rnn = make(H, num_layers=2, bidirectional=True, dropout=0.3, recurrent_dropout=0.4,
               time_major=True, param_dtype=FLOAT)  # fmt: skip
    params = randomize(rnn.init(jax.random.key(0), I), jax.random.key(1))
    xs = normal(jax.random.key(2), (T, B, I))
    carry = randomize(rnn.initial_carry((B,)), jax.random.key(3))
    key = jax.random.key(4)
    lengths = jnp.asarray(LENGTHS)

    def loss(p, x, c):
        final, ys = rnn.apply(p, x, c, lengths=lengths, key=key)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a**2) for a in jax.tree.leaves(final))

    args = (params, xs, carry)
    direction = randomize(args, jax.random.key(5))
    log.clear()
    got = jax.jvp(loss, args, direction)
    seen, log[:] = set(log), []
    rule = jax.jvp(jax.jit(loss), args, direction)  # the jit hides the jvp: the rule's tangent
    forward = "scan" if jax.default_backend() == "cpu" else "rule"
    assert seen == {forward} and set(log) == {"rule"}
    _close_trees(got, rule)


def test_forward_mode_sees_only_a_jvp_around_the_call():
    x = jnp.ones(3)
    seen = []

    def f(a):
        seen.append(fast.forward_mode({"a": a}, None))
        return a * 2.0

    jax.jvp(f, (x,), (x,))
    jax.grad(lambda a: jnp.sum(f(a)))(x)
    jax.jit(lambda a: jax.jvp(f, (a,), (a,)))(x)
    jax.jvp(jax.jit(f), (x,), (x,))
    jax.vmap(lambda a: jax.jvp(f, (a,), (a,)))(jnp.ones((2, 3)))
    jax.jvp(jax.grad(lambda a: jnp.sum(f(a))), (x,), (x,))  # reverse inside forward
    f(x)
    assert seen == [True, False, True, False, True, False, False]


def test_forward_mode_can_keep_the_rule(monkeypatch):
    """Where ``FORWARD_MODE_RULE_CPU`` is set (as on other backends), a jvp keeps the rule."""
    monkeypatch.setattr("lstm_jax.sequence.fast.FORWARD_MODE_RULE_CPU", True)
    log = _record_paths(monkeypatch)
    rnn = lj.LSTM(H, param_dtype=FLOAT)
    params = rnn.init(jax.random.key(0), I)
    xs = normal(jax.random.key(2), (B, T, I))
    jax.jvp(lambda x: rnn.apply(params, x)[1], (xs,), (xs,))
    assert log == ["rule"]
    assert rule_pays(lj.LSTMCell(4), forward=True)


def _record_lstm_static(monkeypatch):
    """The LSTM rule's static options, as the runner builds them, in a list that fills up."""
    seen, real = [], fast.fast_lstm.Static

    def record(*args):
        seen.append(real(*args))
        return seen[-1]

    monkeypatch.setattr(fast.fast_lstm, "Static", record)
    return seen


@pytest.mark.x64
@pytest.mark.parametrize("kw", VARIANTS[:2], ids=["plain", "lengths-reverse"])
def test_gates_major_products_equal_autodiff(kw, monkeypatch):
    """The LSTM rule's forward loop in its other product orientation (chosen on CPU for a batch
    of 16 to 32 and 512+ units, see ``fast.gates_major``; the range is widened here to this
    test's sizes): outputs and every derivative still equal autodiff through ``scan``."""
    monkeypatch.setattr(fast, "GATES_MAJOR_BATCH_CPU", (1, B))
    monkeypatch.setattr(fast, "GATES_MAJOR_MIN_HIDDEN_CPU", 1)
    seen = _record_lstm_static(monkeypatch)
    jax.clear_caches()  # `fast_scan` traces once per config and shapes: drop traces made before
    cell = CELLS["lstm"]()
    args = _setup(cell, seed=11)
    direction = randomize(args, jax.random.key(12))
    fast_loss, ref = _pair(cell, kw)
    _close_trees(_derivatives(fast_loss, args, direction), _derivatives(ref, args, direction))
    assert seen and all(st.gates_major == (jax.default_backend() == "cpu") for st in seen)


def test_gates_major_only_for_the_measured_range():
    on_cpu = jax.default_backend() == "cpu"
    assert fast.gates_major(False, 32, 512) == fast.gates_major(False, 16, 1024) == on_cpu
    assert not fast.gates_major(False, 8, 512) and not fast.gates_major(False, 64, 512)
    assert not fast.gates_major(False, 32, 384) and not fast.gates_major(True, 32, 512)
    assert fast.gates_major(True, 32, 1024) == fast.gates_major(True, 16, 2048) == on_cpu
    assert not fast.gates_major(True, 8, 1024) and not fast.gates_major(True, 64, 1024)


def test_gates_major_replaces_the_stacked_input_from_1024_units(monkeypatch):
    """A narrow input is stacked with the recurrent product, except where the gates-major loop
    takes over (CPU, a batch of 16 to 32, 1024+ units): the loop never does both."""
    seen = _record_lstm_static(monkeypatch)
    for hidden, batch in ((1024, 32), (512, 32), (1024, 64)):
        fast._runner(lj.LSTMCell(hidden), 1, 1, batch)  # a one-wide input: 4 I <= H
    on_cpu = jax.default_backend() == "cpu"
    assert [(st.stack, st.gates_major) for st in seen] == [
        (not on_cpu, on_cpu),
        (True, False),
        (True, False),
    ]


def test_unsupported_cells_and_inputs_fall_back_to_scan_in_layers():
    assert fast_supported(lj.LSTMCell(H), jnp.ones((2, T, I), jnp.float32))
    assert not fast_supported(lj.LSTMCell(H), jnp.ones((2, T, I), jnp.float16))  # dtype of xs
    for cell in [
        lj.LSTMCell(H, peephole=True),
        lj.LSTMCell(H, dtype=jnp.bfloat16),
        lj.GRUCell(H, gate_activation="hard_sigmoid"),
        lj.SimpleRNNCell(H, activation="relu"),
        lj.ConvLSTMCell(H, kernel_size=(3, 3)),
    ]:
        assert not fast_supported(cell)
    rnn = lj.SimpleRNN(H, activation="relu")  # runs, through scan
    params = rnn.init(jax.random.key(0), I)
    assert rnn.apply(params, jnp.ones((2, T, I), jnp.float32))[1].shape == (2, T, H)


@pytest.mark.parametrize(
    "cell, match",
    [
        (lj.GRUCell(H, gate_activation="hard_sigmoid"), "`gate_activation='hard_sigmoid'`"),
        (lj.SimpleRNNCell(H, activation="relu"), "`activation='relu'`"),
        (lj.GRUCell(H, dtype=jnp.bfloat16), "`dtype=bfloat16`"),
        (lj.LSTMCell(H, proj_size=2), "`proj_size=2`"),
    ],
)
def test_unsupported_options_raise_naming_them(cell, match):
    params = cell.init(jax.random.key(0), I)
    with pytest.raises(ValueError, match=r"`fast_scan`: the hand-derived derivative of .*" + match):
        fast_scan(cell, params, jnp.ones((2, T, I)))


def test_bad_arguments_raise():
    cell = lj.GRUCell(H)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.ones((2, T, I))
    with pytest.raises(TypeError, match=r"`fast_scan`: `cell` must be an LSTMCell, GRUCell or"):
        fast_scan(object(), params, xs)
    with pytest.raises(ValueError, match=r"`checkpoint_every` must be a positive int or None"):
        fast_scan(cell, params, xs, checkpoint_every=0)
    with pytest.raises(ValueError, match=r"`recurrent_mask` must have the shape .* \(2, 4\); got"):
        fast_scan(cell, params, xs, recurrent_mask=jnp.ones((H,)))
    with pytest.raises(ValueError, match=r"`fast_scan`: `xs` has 4 features but `params` expect 3"):
        fast_scan(cell, params, jnp.ones((2, T, 4)))
