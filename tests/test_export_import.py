"""ONNX import: files from PyTorch's own ``torch.onnx.export`` and from ``to_onnx`` run in
lstm_jax as they run in torch and onnxruntime, to 1e-5."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from lstm_jax.export import RecurrentModel, from_onnx, to_onnx  # noqa: E402

TOL = 1e-5


class WithHead(torch.nn.Module):
    """A recurrent layer and a Linear on every step or on the last step."""

    def __init__(self, rnn, out, last):
        super().__init__()
        self.rnn, self.last = rnn, last
        width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.fc = torch.nn.Linear(width, out)

    def forward(self, x):
        y = self.rnn(x)[0]
        return self.fc(y[:, -1] if self.last else y)


def torch_export(module, x, path, dynamo):
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            dims = ({0: torch.export.Dim("B"), 1: torch.export.Dim("T")},)
            torch.onnx.export(module, (x,), path, dynamo=True, dynamic_shapes=dims, verbose=False)
        else:
            axes = {"x": {0: "batch", 1: "time"}}
            torch.onnx.export(
                module, (x,), path, dynamo=False, input_names=["x"], dynamic_axes=axes
            )
        return module(x)


MODULES = [
    (lambda: torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True), False),
    pytest.param(lambda: torch.nn.LSTM(3, 4, batch_first=False), False, marks=pytest.mark.slow),
    (lambda: torch.nn.GRU(3, 5, num_layers=3, bidirectional=True, batch_first=True), False),
    pytest.param(
        lambda: torch.nn.RNN(3, 4, num_layers=2, batch_first=True, nonlinearity="relu"),
        False,
        marks=pytest.mark.slow,
    ),
    (
        lambda: WithHead(torch.nn.LSTM(3, 5, 2, batch_first=True, bidirectional=True), 2, True),
        False,
    ),
    pytest.param(
        lambda: WithHead(torch.nn.GRU(3, 5, 2, batch_first=True), 3, False),
        False,
        marks=pytest.mark.slow,
    ),
    pytest.param(
        lambda: torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True),
        True,
        marks=pytest.mark.slow,
    ),
    pytest.param(
        lambda: WithHead(torch.nn.GRU(3, 5, 2, batch_first=True, bidirectional=True), 2, False),
        True,
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("make, dynamo", MODULES)
def test_torch_onnx_export_imports(make, dynamo, tmp_path):
    torch.manual_seed(0)
    module = make()
    batch_first = getattr(module, "rnn", module).batch_first
    shape = (4, 7, 3) if batch_first else (7, 4, 3)
    x = torch.randn(*shape)
    want = torch_export(module, x, tmp_path / "t.onnx", dynamo)
    want = (want[0] if isinstance(want, tuple) else want).numpy()
    layer, params = from_onnx(tmp_path / "t.onnx")
    _, got = jax.jit(layer.apply)(params, jnp.asarray(x.numpy()))
    np.testing.assert_allclose(got, want, atol=TOL)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "t.onnx")).graph.node]
    assert {"LSTM", "GRU", "RNN"} & set(ops)  # the exporter wrote the recurrent operators


@pytest.mark.parametrize(
    "model",
    [
        lj.LSTM(4, num_layers=2, bidirectional=True, peephole=True),
        pytest.param(
            RecurrentModel(lj.GRU(4, reset_after=False), lj.Dense(2), pooling="last"),
            marks=pytest.mark.slow,
        ),
        pytest.param(
            RecurrentModel(lj.SimpleRNN(3, bidirectional=True), lj.Dense(2)),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_round_trip_through_to_onnx(model, tmp_path):
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda a: jnp.asarray(a + 0.3 * rng.normal(size=a.shape).astype(a.dtype)),
        model.init(jax.random.key(0), 3),
    )
    to_onnx(model, params, tmp_path / "m.onnx", lengths=True)
    layer, back = from_onnx(tmp_path / "m.onnx")
    xs = jnp.asarray(rng.normal(size=(3, 6, 3)), jnp.float32)
    lengths = jnp.array([6, 2, 4], jnp.int32)
    want = model.apply(params, xs, lengths=lengths)[1]
    np.testing.assert_allclose(layer.apply(back, xs, lengths=lengths)[1], want, atol=TOL)
    assert type(layer.rnn.cell if hasattr(layer, "rnn") else layer.cell) is type(
        model.rnn.cell if hasattr(model, "rnn") else model.cell
    )


def _graph(tmp_path, nodes, inits, inputs=None):
    from onnx import TensorProto, helper, numpy_helper

    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 2, 3])]
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def _lstm_inits(H=4, I=3):
    rng = np.random.default_rng(0)
    return {
        "W": rng.normal(size=(1, 4 * H, I)).astype(np.float32),
        "R": rng.normal(size=(1, 4 * H, H)).astype(np.float32),
    }


def test_a_missing_file_or_one_that_is_not_a_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`from_onnx`: .*nope.onnx: no such file"):
        from_onnx(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match=r"`from_onnx`: .*junk.onnx is not an ONNX model"):
        from_onnx(junk)
    with pytest.raises(TypeError, match=r"`from_onnx`: `path` must be a str or Path; got int"):
        from_onnx(3)


def test_to_onnx_creates_the_directory_and_checks_input_size(tmp_path):
    layer = lj.LSTM(4)
    params = layer.init(jax.random.key(0), 3)
    path = tmp_path / "new" / "dir" / "m.onnx"
    to_onnx(layer, params, path)
    back, back_params = from_onnx(path)
    x = jnp.ones((2, 5, 3))
    np.testing.assert_allclose(back.apply(back_params, x)[1], layer.apply(params, x)[1], atol=1e-6)
    with pytest.raises(ValueError, match=r"`to_onnx`: `input_size`=7 does not match the params"):
        to_onnx(layer, params, input_size=7)


def test_bad_files_name_the_node(tmp_path):
    from onnx import helper

    relu = helper.make_node("Relu", ["x"], ["y"], name="act")
    with pytest.raises(ValueError, match=r"has no LSTM, GRU or RNN node; its ops are \['Relu'\]"):
        from_onnx(_graph(tmp_path, [relu], {}))

    clip = helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="l0", hidden_size=4, clip=3.0)
    with pytest.raises(ValueError, match=r"node 'l0' \(LSTM\): attribute clip=3.0 has no lstm"):
        from_onnx(_graph(tmp_path, [clip], _lstm_inits()))

    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="l0", hidden_size=4)
    tail = helper.make_node("Sin", ["y"], ["z"], name="odd")
    with pytest.raises(ValueError, match=r"node 'odd' \(Sin\) on the data path has no lstm_jax"):
        from_onnx(_graph(tmp_path, [lstm, tail], _lstm_inits()))

    lstm = helper.make_node(
        "LSTM",
        ["x", "W", "R"],
        ["y"],
        name="l0",
        hidden_size=4,
        activations=["Elu", "Tanh", "Tanh"],
    )
    with pytest.raises(ValueError, match=r"node 'l0' \(LSTM\): activation 'Elu' is not supported"):
        from_onnx(_graph(tmp_path, [lstm], _lstm_inits()))

    rev = helper.make_node(
        "LSTM", ["x", "W", "R"], ["y"], name="l0", hidden_size=4, direction="reverse"
    )
    with pytest.raises(ValueError, match=r"attribute direction='reverse' has no lstm_jax cell"):
        from_onnx(_graph(tmp_path, [rev], _lstm_inits()))
