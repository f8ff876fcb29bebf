"""PyTorch interop: converted models match torch.nn's outputs, final states and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lstm_jax as lj  # noqa: E402
from lstm_jax.interop import from_torch, to_torch  # noqa: E402
from tests.helpers import randomize  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)
NO_ONEDNN_PROJ = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")
T, B, I = 6, 4, 3
# kind, num_layers, bidirectional, proj_size, bias, batch_first, lengths
CONFIGS = [
    ("LSTM", 2, True, 2, True, False, [6, 3, 1, 5]),
    ("LSTM", 3, False, None, False, True, [2, 6, 4, 6]),
    ("GRU", 2, True, None, True, True, [6, 1, 4, 3]),
    ("GRU", 1, False, None, False, False, None),
    ("RNN", 1, True, None, True, True, [5, 6, 2, 1]),
]


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)


def torch_module(kind, L, bidir, proj, bias, bf):
    torch.manual_seed(0)
    extra = {"proj_size": proj or 0} if kind == "LSTM" else {}
    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}[kind]
    return cls(I, 5, num_layers=L, bias=bias, batch_first=bf, bidirectional=bidir, **extra)


def inputs(bf, lengths):
    x = np.random.default_rng(1).normal(size=(B, T, I) if bf else (T, B, I)).astype(np.float32)
    w_out = jnp.asarray(np.random.default_rng(2).normal(size=(64,)), jnp.float32)
    return x, None if lengths is None else np.array(lengths), w_out


def torch_run(module, x, lengths, w_out):
    """Outputs, stacked final h (and c), and gradients of a fixed scalar of all of them."""
    xt = torch.tensor(x, requires_grad=True)
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False
        )
    out, state = module(inp)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=module.batch_first, total_length=T
        )
    states = list(state) if isinstance(state, tuple) else [state]
    loss = sum((t * torch.tensor(_weights(t.shape, w_out))).sum() for t in [out, *states])
    loss.backward()
    grads = {k: v.grad.numpy() for k, v in module.named_parameters()}
    return out.detach().numpy(), [s.detach().numpy() for s in states], xt.grad.numpy(), grads


def _weights(shape, w_out):
    n = int(np.prod(shape))
    return np.resize(np.asarray(w_out), n).reshape(shape)


def jax_states(layer, carry):
    """The final carry stacked like torch's h_n (and c_n): (layers * directions, B, P)."""
    per = [
        c for s in carry for c in ([s.forward, s.backward] if layer.bidirectional else [s.forward])
    ]
    if isinstance(layer.cell, lj.LSTMCell):
        return [jnp.stack([c.h for c in per]), jnp.stack([c.c for c in per])]
    return [jnp.stack(per)]


@functools.partial(jax.jit, static_argnames="layer")
def _loss_and_grads(layer, params, xs, lengths, w_out):
    def loss(params, xs):
        carry, ys = layer.apply(params, xs, lengths=lengths)
        parts = [ys, *jax_states(layer, carry)]
        return sum(jnp.sum(p * _weights_jax(p.shape, w_out)) for p in parts), parts

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, xs)


def _weights_jax(shape, w_out):
    n = int(np.prod(shape))
    return jnp.resize(w_out, n).reshape(shape)


def jax_run(layer, params, x, lengths, w_out):
    lens = None if lengths is None else jnp.asarray(lengths)
    (_, parts), (g_params, g_x) = _loss_and_grads(layer, params, jnp.asarray(x), lens, w_out)
    return parts[0], parts[1:], g_x, g_params


def torch_named_grads(layer, g_params):
    """Maps lstm_jax gradients to torch parameter names, independently of the converter:
    both torch biases get the gradient of the summed bias, except the GRU's recurrent n block,
    which gets that of ``b_hn``."""
    out, H = {}, layer.cell.hidden_size
    for k, lp in enumerate(g_params):
        for sfx, g in ((f"_l{k}", lp.forward), (f"_l{k}_reverse", lp.backward)):
            if g is None:
                continue
            out[f"weight_ih{sfx}"], out[f"weight_hh{sfx}"] = g.w_x.T, g.w_h.T
            if g.b is not None:
                out[f"bias_ih{sfx}"] = g.b
                hh = (
                    g.b
                    if not isinstance(g, lj.GRUParams)
                    else jnp.concatenate([g.b[: 2 * H], g.b_hn])
                )
                out[f"bias_hh{sfx}"] = hh
            if getattr(g, "w_proj", None) is not None:
                out[f"weight_hr{sfx}"] = g.w_proj.T
    return out


def compare(module, layer, params, cfg):
    x, lengths, w_out = inputs(cfg[5], cfg[6])
    t_out, t_states, t_gx, t_grads = torch_run(module, x, lengths, w_out)
    j_out, j_states, j_gx, j_grads = jax_run(layer, params, x, lengths, w_out)
    close(j_out, t_out)
    for a, b in zip(j_states, t_states, strict=True):
        close(a, b)
    close(j_gx, t_gx)
    mapped = torch_named_grads(layer, j_grads)
    assert set(mapped) == set(t_grads)
    for name, g in t_grads.items():
        close(mapped[name], g)


@pytest.mark.slow
@NO_ONEDNN_PROJ
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c[:6])))
def test_outputs_states_and_gradients_match_both_ways(cfg):
    # torch -> lstm_jax
    module = torch_module(*cfg[:6])
    layer, params = from_torch(module)
    assert layer.time_major is not cfg[5] and layer.num_layers == cfg[1]
    compare(module, layer, params, cfg)
    layer_sd, params_sd = from_torch(module.state_dict(), batch_first=cfg[5])
    assert layer_sd == layer
    jax.tree.map(np.testing.assert_array_equal, params_sd, params)
    # lstm_jax -> torch, from params unlike any torch init (every bias and b_hn nonzero)
    params = randomize(params, jax.random.key(4))
    module = to_torch(layer, params)
    assert module.batch_first is cfg[5] and module.num_layers == cfg[1]
    compare(module, layer, params, cfg)
    back_layer, back = from_torch(module)
    assert back_layer == layer
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-7), back, params)


def test_to_torch_takes_layers_built_here():
    layer = lj.LSTM(5, 2, True, proj_size=3, use_bias=False, time_major=False)
    module = to_torch(layer, layer.init(jax.random.key(3), I))
    assert (module.proj_size, module.bias, module.batch_first, module.bidirectional) == (
        3,
        False,
        True,
        True,
    )


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_cells_both_ways(kind):
    torch.manual_seed(0)
    tcell = {"LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell, "RNN": torch.nn.RNNCell}[kind](
        3, 4
    )
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    h = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
    c = np.random.default_rng(2).normal(size=(2, 4)).astype(np.float32)
    cell, params = from_torch(tcell)
    t_state = (torch.tensor(h), torch.tensor(c)) if kind == "LSTM" else torch.tensor(h)
    t_out = tcell(torch.tensor(x), t_state)
    carry = lj.LSTMState(h=jnp.asarray(h), c=jnp.asarray(c)) if kind == "LSTM" else jnp.asarray(h)
    new, y = cell(params, carry, jnp.asarray(x))
    expected = t_out[0] if kind == "LSTM" else t_out
    close(y, expected.detach().numpy())
    if kind == "LSTM":
        close(new.c, t_out[1].detach().numpy())
    params2 = randomize(params, jax.random.key(5))
    t2 = to_torch(cell, params2)
    assert type(t2) is type(tcell)
    y2 = cell(params2, carry, jnp.asarray(x))[1]
    out2 = t2(torch.tensor(x), t_state)
    close(y2, (out2[0] if kind == "LSTM" else out2).detach().numpy())


def test_relu_rnn_and_dropout_carry_over():
    torch.manual_seed(0)
    module = torch.nn.RNN(3, 4, num_layers=2, nonlinearity="relu", dropout=0.25)
    layer, _ = from_torch(module)
    assert layer.cell.activation == "relu" and layer.dropout == 0.25 and layer.time_major
    _, params = from_torch(module.state_dict(), nonlinearity="relu")
    assert to_torch(layer, params).nonlinearity == "relu"


def test_unknown_module_is_a_type_error():
    with pytest.raises(
        TypeError, match=r"`from_torch`: `peer` must be a torch.nn.LSTM.*got Conv1d"
    ):
        from_torch(torch.nn.Conv1d(2, 3, 1))


def test_bad_state_dict_names_every_entry():
    sd = dict(torch.nn.LSTM(3, 4, num_layers=2).state_dict())
    sd["weight_hh_l1"] = torch.zeros(16, 5)
    del sd["bias_hh_l0"]
    sd["extra"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        from_torch(sd)
    msg = str(err.value)
    assert "`peer` lacks `bias_hh_l0` (expected shape (16,))" in msg
    assert "`peer['weight_hh_l1']` must have shape (16, 4); got (16, 5)" in msg
    assert "unexpected entry `extra`" in msg
    with pytest.raises(ValueError, match=r"cannot tell the module kind"):
        from_torch({"weight_ih": torch.zeros(10, 3), "weight_hh": torch.zeros(10, 5)})


def test_contradicting_batch_first_is_a_value_error():
    with pytest.raises(ValueError, match=r"`batch_first=False` contradicts the module's"):
        from_torch(torch.nn.GRU(3, 4, batch_first=True), batch_first=False)


@pytest.mark.parametrize(
    "layer, match",
    [
        (lj.LSTM(4, peephole=True), r"`layer.cell` has peephole=True, which PyTorch cannot"),
        (lj.LSTM(4, layer_norm=True), r"layer_norm=True"),
        (lj.GRU(4, reset_after=False), r"reset_after=False"),
        (lj.LSTMCell(4, proj_size=2), r"proj_size=2, which torch.nn.LSTMCell lacks"),
        (lj.SimpleRNN(4, activation="softsign"), r"offers only 'tanh' and 'relu'"),
        (lj.LSTM(4, recurrent_dropout=0.1), r"`layer.recurrent_dropout=0.1` has no PyTorch"),
    ],
)
def test_options_pytorch_lacks_are_value_errors(layer, match):
    params = layer.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=match):
        to_torch(layer, params)


def test_mismatched_params_are_reported():
    layer = lj.LSTM(4, num_layers=2)
    params = layer.init(jax.random.key(0), 3)
    with pytest.raises(TypeError, match=r"`to_torch`: `params` must be a tuple of 2 LayerParams"):
        to_torch(layer, params[:1])
    other = lj.LSTM(5).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"`params\[0\].forward.w_h` must have shape \(4, 16\)"):
        to_torch(layer, (other[0], params[1]))
    with pytest.raises(TypeError, match=r"`to_torch`: `layer` must be a StackedRNN, a LSTMCell"):
        to_torch(lj.AdditiveAttention(3), None)


# -- whole models: prefix, nn.Linear <-> Dense, nn.Embedding <-> Embedding -------------------


class Seq2Seq(torch.nn.Module):
    """A model as PyTorch users write them: recurrent modules and heads as attributes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(11, I)
        self.encoder = torch.nn.Module()
        self.encoder.lstm = torch.nn.LSTM(I, 5, batch_first=True, bidirectional=True)
        self.decoder = torch.nn.GRU(I, 10, num_layers=2)
        self.out = torch.nn.Linear(10, 4)


def test_whole_model_state_dict_converts_one_module_by_prefix():
    model = Seq2Seq()
    sd = model.state_dict()
    layer, params = from_torch(sd, prefix="encoder.lstm.", batch_first=True)
    ref_layer, ref = from_torch(model.encoder.lstm)
    assert layer == ref_layer and layer.bidirectional and not layer.time_major
    jax.tree.map(np.testing.assert_array_equal, params, ref)
    x = np.random.default_rng(0).normal(size=(B, T, I)).astype(np.float32)
    _, ys = layer.apply(params, jnp.asarray(x))
    close(ys, model.encoder.lstm(torch.tensor(x))[0].detach().numpy())
    # A module with a prefix converts the submodule itself, with its own batch_first.
    assert from_torch(model, prefix="encoder.lstm")[0] == layer  # the final dot is optional
    dec, _ = from_torch(model, prefix="decoder.")
    assert isinstance(dec.cell, lj.GRUCell) and dec.num_layers == 2 and dec.time_major


def test_prefix_errors_list_the_modules_there_are():
    model = Seq2Seq()
    sd = model.state_dict()
    modules = r"\['decoder.', 'embed.', 'encoder.lstm.', 'out.'\]"
    with pytest.raises(ValueError, match=r"whole model's state dict: pass `prefix=` naming the "
                       r"module, one of " + modules):  # fmt: skip
        from_torch(sd)
    with pytest.raises(ValueError, match=r"no entry of `peer` starts with `prefix='dec.'`; the "
                       r"state dict holds the modules \['decoder.'"):  # fmt: skip
        from_torch(sd, prefix="dec.")
    with pytest.raises(ValueError, match=r"`prefix='encoder.gru'` names no submodule of the "
                       r"Seq2Seq; it holds \['embed.', 'encoder.', 'encoder.lstm.'"):  # fmt: skip
        from_torch(model, prefix="encoder.gru")
    with pytest.raises(TypeError, match=r"`from_torch`: `prefix` must be a str; got int"):
        from_torch(sd, prefix=0)
    with pytest.raises(ValueError, match=r"holding only `weight` may be an nn.Linear\(bias=False"):
        from_torch(sd, prefix="embed.")


@pytest.mark.x64
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_linear_and_dense_both_ways(bias, dtype):
    if dtype == torch.float64 and not jax.config.read("jax_enable_x64"):
        pytest.skip("float64 params need JAX_ENABLE_X64=1")
    torch.manual_seed(1)
    linear = torch.nn.Linear(6, 3, bias=bias, dtype=dtype)
    x = np.random.default_rng(0).normal(size=(2, 4, 6))
    expect = linear(torch.tensor(x, dtype=dtype)).detach().numpy()
    for peer in [linear] + ([linear.state_dict()] if bias else []):
        head, params = from_torch(peer)
        assert head == lj.Dense(3, use_bias=bias, param_dtype=jnp.dtype(str(dtype)[6:]))
        close(head.apply(params, jnp.asarray(x, params.w.dtype)), expect)
    # lstm_jax -> torch, from params unlike torch's init
    params = randomize(params, jax.random.key(2))
    back = to_torch(head, params)
    assert type(back) is torch.nn.Linear and back.weight.dtype == dtype
    assert (back.bias is not None) is bias
    y = back(torch.tensor(x, dtype=dtype)).detach().numpy()
    close(head.apply(params, jnp.asarray(x, params.w.dtype)), y)


def test_embedding_both_ways():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(11, 4, padding_idx=0)
    layer, params = from_torch(emb)
    assert layer.vocab_size == 11 and layer.features == 4
    ids = np.array([[0, 3, 10], [7, 7, 1]])
    close(layer.apply(params, jnp.asarray(ids)), emb(torch.tensor(ids)).detach().numpy())
    back = to_torch(layer, randomize(params, jax.random.key(1)))
    assert type(back) is torch.nn.Embedding
    close(back.weight.detach().numpy(), randomize(params, jax.random.key(1)).table)
    with pytest.raises(ValueError, match=r"max_norm=1.0, which renormalises rows"):
        from_torch(torch.nn.Embedding(3, 2, max_norm=1.0))


def test_head_conversion_errors():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"`peer\['bias'\]` must have shape \(3,\); got \(2,\)"):
        from_torch({"weight": torch.zeros(3, 6), "bias": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"`batch_first` and `nonlinearity` apply to recurrent"):
        from_torch(torch.nn.Linear(2, 3), batch_first=True)
    dense = lj.Dense(3)
    with pytest.raises(TypeError, match=r"`to_torch`: `params` must be a DenseParams"):
        to_torch(dense, lj.EmbeddingParams(jnp.ones((3, 2))))
    with pytest.raises(ValueError, match=r"`params.b` must have shape \(3,\)"):
        to_torch(dense, lj.DenseParams(jnp.ones((2, 3)), jnp.ones((4,))))
    with pytest.raises(ValueError, match=r"`params.w` must be \(in_features, 3\)"):
        to_torch(dense, lj.DenseParams(jnp.ones((2, 4)), jnp.ones((3,))))
