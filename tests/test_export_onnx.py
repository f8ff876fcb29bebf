"""ONNX export: every exported model runs in onnxruntime and matches ``layer.apply`` to 1e-5."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from lstm_jax.cli.models import CharLM, Classifier, Forecaster  # noqa: E402
from lstm_jax.export import RecurrentModel, to_onnx  # noqa: E402

TOL = 1e-5
SLOW = pytest.mark.slow


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def state_feeds(carry) -> dict:
    """lstm_jax carries as the graph's ``h0_<l>``/``c0_<l>`` inputs, ``(D, B, H)``."""
    feeds = {}
    for layer, c in enumerate(carry):
        dirs = [c.forward] + ([c.backward] if c.backward is not None else [])
        if isinstance(c.forward, lj.LSTMState):
            feeds[f"h0_{layer}"] = np.stack([np.asarray(d.h) for d in dirs])
            feeds[f"c0_{layer}"] = np.stack([np.asarray(d.c) for d in dirs])
        else:
            feeds[f"h0_{layer}"] = np.stack([np.asarray(d) for d in dirs])
    return feeds


def run_onnx(layer, params, xs, lengths=None, carry=None):
    proto = to_onnx(layer, params, lengths=lengths is not None, initial_state=carry is not None)
    sess = session(proto)
    feeds = {sess.get_inputs()[0].name: np.asarray(xs)}
    if lengths is not None:
        feeds["lengths"] = np.asarray(lengths, np.int32)
    if carry is not None:
        feeds.update(state_feeds(carry))
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))


def jitter(params, seed):
    """Params moved off their init (zero biases and peepholes would hide wiring mistakes);
    NumPy draws, so no test compiles a kernel per leaf."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: jnp.asarray(np.asarray(a) + 0.3 * rng.normal(size=a.shape).astype(a.dtype)),
        params,
    )


def carry_arrays(carry) -> list[np.ndarray]:
    """Final carries as the graph's ``h_<l>``/``c_<l>`` outputs, in output order."""
    out = []
    for c in carry:
        dirs = [c.forward] + ([c.backward] if c.backward is not None else [])
        if isinstance(c.forward, lj.LSTMState):
            out += [np.stack([d.h for d in dirs]), np.stack([d.c for d in dirs])]
        else:
            out.append(np.stack(dirs))
    return out


# (cell, num_layers, bidirectional, lengths): every cell option the operators express, each
# with and without a backward direction, lengths and several layers somewhere.
CONFIGS = [
    (lj.LSTMCell(5), 2, True, True),
    (lj.LSTMCell(5, peephole=True), 2, True, True),
    pytest.param(lj.LSTMCell(4, peephole=True), 1, False, False, marks=SLOW),
    pytest.param(
        lj.LSTMCell(4, gate_activation="hard_sigmoid", activation="softsign"),
        1,
        True,
        False,
        marks=SLOW,
    ),
    pytest.param(lj.LSTMCell(4, use_bias=False), 1, False, True, marks=SLOW),
    (lj.GRUCell(5), 3, True, True),
    pytest.param(lj.GRUCell(5, reset_after=False), 2, True, True, marks=SLOW),
    pytest.param(lj.GRUCell(4, activation="relu"), 1, False, True, marks=SLOW),
    (lj.SimpleRNNCell(5), 2, True, True),
    pytest.param(lj.SimpleRNNCell(4, activation="identity"), 1, False, False, marks=SLOW),
]


@pytest.mark.parametrize("cell, num_layers, bidirectional, with_lengths", CONFIGS)
def test_stack_matches_onnxruntime(cell, num_layers, bidirectional, with_lengths):
    seed = zlib.crc32(repr((cell, num_layers, bidirectional, with_lengths)).encode())
    rng = np.random.default_rng(seed)
    rnn = lj.StackedRNN(cell, num_layers=num_layers, bidirectional=bidirectional)
    I, B, T = int(rng.integers(1, 6)), 4, int(rng.integers(2, 9))
    params = jitter(rnn.init(jax.random.key(0), I), seed)
    xs = jnp.asarray(rng.normal(size=(B, T, I)), jnp.float32)
    lengths = jnp.asarray(rng.integers(1, T + 1, size=B), jnp.int32) if with_lengths else None
    carry0 = jitter(rnn.initial_carry((B,)), seed + 1)
    carry, ys = jax.jit(rnn.apply)(params, xs, carry0, lengths=lengths)
    out = run_onnx(rnn, params, xs, lengths, carry0)
    np.testing.assert_allclose(out["y"], ys, atol=TOL)
    finals = list(out.values())[1:]
    assert len(finals) == len(carry_arrays(carry))
    for got, want in zip(finals, carry_arrays(carry), strict=True):
        np.testing.assert_allclose(got, want, atol=TOL)


@pytest.mark.slow
def test_time_major_and_zero_carry():
    rnn = lj.LSTM(6, num_layers=2, bidirectional=True, time_major=True)
    params = jitter(rnn.init(jax.random.key(0), 3), 1)
    xs = jax.random.normal(jax.random.key(2), (9, 2, 3))  # (T, B, I)
    carry, ys = rnn.apply(params, xs)
    out = run_onnx(rnn, params, xs)
    np.testing.assert_allclose(out["y"], ys, atol=TOL)
    np.testing.assert_allclose(out["c_1"], carry_arrays(carry)[3], atol=TOL)


def test_symbolic_batch_and_time():
    rnn = lj.GRU(4, bidirectional=True)
    params = jitter(rnn.init(jax.random.key(0), 2), 1)
    proto = to_onnx(rnn, params)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "time", 2]
    sess = session(proto)
    for B, T in [(1, 1), (3, 11), (7, 2)]:
        xs = np.random.default_rng(B).normal(size=(B, T, 2)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": xs})[0], rnn.apply(params, xs)[1], atol=TOL)


@pytest.mark.slow
def test_one_operator_node_per_layer(tmp_path):
    rnn = lj.LSTM(4, num_layers=3, bidirectional=True, peephole=True)
    params = rnn.init(jax.random.key(0), 2)
    to_onnx(rnn, params, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 3 and "Scan" not in ops and "Loop" not in ops
    node = next(n for n in proto.graph.node if n.op_type == "LSTM")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["direction"] == b"bidirectional" and attrs["hidden_size"] == 4
    assert len(node.input) == 8  # X, W, R, B, sequence_lens, initial_h, initial_c, P


HEADS = [
    (dict(head=lj.Dense(3)), True),
    pytest.param(dict(head=lj.Dense(3, use_bias=False)), False, marks=SLOW),
    (dict(head=lj.Dense(2), pooling="last"), True),
    pytest.param(dict(head=lj.Dense(2), pooling="last"), False, marks=SLOW),
    pytest.param(dict(head=None, pooling="last"), True, marks=SLOW),
    (dict(head=lj.Dense(2), pooling="attention", attention=lj.AdditiveAttention(5)), True),
    pytest.param(
        dict(head=lj.Dense(2), pooling="attention", attention=lj.AdditiveAttention(5)),
        False,
        marks=SLOW,
    ),
]


@pytest.mark.parametrize("spec, with_lengths", HEADS)
def test_heads_match_onnxruntime(spec, with_lengths):
    model = RecurrentModel(lj.GRU(6, num_layers=2, bidirectional=True), **spec)
    params = jitter(model.init(jax.random.key(3), 3), 4)
    xs = jax.random.normal(jax.random.key(5), (5, 8, 3))
    lengths = jnp.array([8, 1, 4, 6, 2], jnp.int32) if with_lengths else None
    _, ys = jax.jit(model.apply)(params, xs, lengths=lengths)
    out = run_onnx(model, params, xs, lengths)
    np.testing.assert_allclose(out["y"], ys, atol=TOL)


@pytest.mark.slow
def test_length_zero_gives_zero_outputs():
    model = RecurrentModel(lj.LSTM(4, bidirectional=True), lj.Dense(2), pooling="last")
    params = jitter(model.init(jax.random.key(0), 3), 1)
    xs = jax.random.normal(jax.random.key(2), (3, 5, 3))
    lengths = jnp.array([0, 5, 2], jnp.int32)
    _, ys = model.apply(params, xs, lengths=lengths)
    np.testing.assert_allclose(run_onnx(model, params, xs, lengths)["y"], ys, atol=TOL)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_command_models_match_onnxruntime(cell):
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(4, 12, 2)), jnp.float32)
    fc = Forecaster(n_features=2, n_targets=2, hidden_size=7, num_layers=2, cell=cell)
    p = jitter(fc.init(jax.random.key(0)), 1)
    np.testing.assert_allclose(run_onnx(fc, p, xs)["y"], fc.apply(p, xs)[1], atol=TOL)

    clf = Classifier(n_features=2, n_classes=3, hidden_size=5, cell=cell)
    p = jitter(clf.init(jax.random.key(0)), 1)
    lengths = jnp.array([12, 3, 7, 1], jnp.int32)
    sess = session(to_onnx(clf, p))  # a Classifier always takes lengths
    got = sess.run(["y"], {"x": np.asarray(xs), "lengths": np.asarray(lengths)})[0]
    np.testing.assert_allclose(got, clf.apply(p, xs, lengths)[1], atol=TOL)

    lm = CharLM(vocab_size=11, hidden_size=6, cell=cell)
    p = jitter(lm.init(jax.random.key(0)), 1)
    tokens = rng.integers(0, 11, size=(3, 9))
    got = session(to_onnx(lm, p)).run(["y"], {"tokens": tokens.astype(np.int64)})[0]
    np.testing.assert_allclose(got, lm.apply(p, jnp.asarray(tokens))[1], atol=TOL)


@pytest.mark.parametrize(
    "layer, match",
    [
        (lj.LSTM(4, layer_norm=True), r"`LSTMCell\(layer_norm=True\)` cannot export"),
        (lj.LSTM(4, proj_size=2), r"`LSTMCell\(proj_size=2\)` cannot export: .*projection"),
        (lj.LSTM(4, forget_gate=False), r"`LSTMCell\(forget_gate=False\)` cannot export"),
        (lj.LSTM(4, dtype=jnp.bfloat16), r"`LSTMCell\(dtype=bfloat16\)`: mixed precision"),
        (lj.GRU(4, gate_activation=jax.nn.silu), r"`GRUCell\(gate_activation=<"),
    ],
)
def test_unsupported_options_are_named(layer, match):
    params = layer.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=match):
        to_onnx(layer, params)


def test_every_unsupported_option_at_once():
    layer = lj.LSTM(4, layer_norm=True, proj_size=2, forget_gate=False)
    with pytest.raises(ValueError, match=r"(?s)layer_norm.*proj_size.*forget_gate"):
        to_onnx(layer, layer.init(jax.random.key(0), 3))


def test_unsupported_cell_and_layer_are_type_errors():
    conv = lj.StackedRNN(lj.ConvLSTMCell(2, kernel_size=(3, 3)), 1)
    with pytest.raises(TypeError, match=r"`to_onnx`: ConvLSTMCell has no ONNX recurrent operator"):
        to_onnx(conv, None)
    with pytest.raises(TypeError, match=r"`to_onnx`: `layer` must be a StackedRNN.*got Dense"):
        to_onnx(lj.Dense(2), None)


def test_import_lstm_jax_does_not_load_onnx():
    import subprocess
    import sys

    code = (
        "import sys, lstm_jax, lstm_jax.export; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def random_model(rng):
    """A random exportable model: cell and its options, depth, direction, layout, head."""
    H = int(rng.integers(2, 7))
    kind = rng.choice(["lstm", "gru", "rnn"])
    if kind == "lstm":
        cell = lj.LSTMCell(H, peephole=bool(rng.integers(2)), use_bias=bool(rng.integers(2)))
    elif kind == "gru":
        cell = lj.GRUCell(H, reset_after=bool(rng.integers(2)))
    else:
        cell = lj.SimpleRNNCell(H, activation=str(rng.choice(["tanh", "relu"])))
    rnn = lj.StackedRNN(
        cell, int(rng.integers(1, 4)), bool(rng.integers(2)), time_major=bool(rng.integers(2))
    )
    pooling = rng.choice([None, "last", "attention"])
    head = lj.Dense(int(rng.integers(1, 4))) if rng.integers(2) else None
    att = lj.AdditiveAttention(int(rng.integers(2, 6))) if pooling == "attention" else None
    return RecurrentModel(rnn, head, pooling, att)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_random_models_match_onnxruntime(seed):
    rng = np.random.default_rng(100 + seed)
    model = random_model(rng)
    I, B, T = int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 8))
    params = jitter(model.init(jax.random.key(seed), I), seed)
    shape = (T, B, I) if model.rnn.time_major else (B, T, I)
    xs = jnp.asarray(rng.normal(size=shape), jnp.float32)
    lengths = jnp.asarray(rng.integers(0, T + 1, size=B), jnp.int32) if rng.integers(2) else None
    carry0 = jitter(model.rnn.initial_carry((B,)), seed + 1) if rng.integers(2) else None
    carry, ys = jax.jit(model.apply)(params, xs, carry0, lengths=lengths)
    proto = to_onnx(model, params, lengths=lengths is not None, initial_state=carry0 is not None)
    sess = session(proto)
    feeds = {"x": np.asarray(xs)}
    if lengths is not None:
        feeds["lengths"] = np.asarray(lengths)
    if carry0 is not None:
        feeds.update(state_feeds(carry0))
    got = sess.run(None, feeds)
    np.testing.assert_allclose(got[0], ys, atol=TOL, err_msg=repr(model))
    for g, want in zip(got[1:], carry_arrays(carry), strict=True):
        np.testing.assert_allclose(g, want, atol=TOL, err_msg=repr(model))
