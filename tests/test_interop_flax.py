"""Flax interop: converted cells match linen and NNX cells' sequences, carries and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")
import flax.linen as nn  # noqa: E402

import lstm_jax as lj  # noqa: E402
from lstm_jax import nnx as ljnnx  # noqa: E402
from lstm_jax.interop import from_flax, to_flax  # noqa: E402
from tests.helpers import randomize  # noqa: E402

B, T, I, H = 2, 5, 3, 4
TOL = dict(rtol=1e-5, atol=1e-5)
NAMES = ["LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell"]
CASES = [(kind, name) for kind in ("linen", "nnx") for name in NAMES]


def close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **TOL), a, b)


def data():
    x = jax.random.normal(jax.random.key(7), (B, T, I))
    w = jax.random.normal(jax.random.key(8), (B, T, H))
    return x, w


def flax_tree(kind, name):
    """A Flax param tree of the cell with every leaf random (biases nonzero too)."""
    if kind == "linen":
        cell = getattr(nn, name)(H)
        x = jnp.ones((B, I))
        tree = cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(1), x.shape), x)
        tree = tree["params"]
    else:
        tree = nnx.to_pure_dict(nnx.state(getattr(nnx, name)(I, H, rngs=nnx.Rngs(0)), nnx.Param))
    return randomize(tree, jax.random.key(2))


def nnx_module(name, tree):
    module = getattr(nnx, name)(I, H, rngs=nnx.Rngs(0))
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, tree)
    nnx.update(module, state)
    return module


def flax_run(kind, name, tree, x):
    """``(carry, ys)`` of Flax's own RNN over ``x``."""
    if kind == "linen":
        rnn = nn.RNN(getattr(nn, name)(H), return_carry=True)
        return rnn.apply({"params": {"cell": tree}}, x)
    return nnx.RNN(nnx_module(name, tree), return_carry=True)(x)


def to_flax_carry(cell, carry):
    return (carry.c, carry.h) if isinstance(cell, lj.LSTMCell) else carry


def ours_run(cell, params, x):
    carry, ys = lj.scan(cell, params, x)
    return to_flax_carry(cell, carry), ys


@pytest.mark.parametrize("kind, name", CASES)
def test_from_flax_matches_sequences_and_carries(kind, name):
    x, w = data()
    tree = flax_tree(kind, name)
    peer = nnx_module(name, tree) if kind == "nnx" else {"params": tree}
    cell, params = from_flax(peer)
    close(ours_run(cell, params, x), flax_run(kind, name, tree, x))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_map_back_to_the_flax_tree(name):
    # linen only: NNX cells hold the same function under other names (checked above).
    x, w = data()
    tree = flax_tree("linen", name)
    cell, params = from_flax(tree)

    @jax.jit
    def grads(tree, params, x):
        flax_loss = lambda t, x: jnp.sum(flax_run("linen", name, t, x)[1] * w)  # noqa: E731
        ours_loss = lambda p, x: jnp.sum(ours_run(cell, p, x)[1] * w)  # noqa: E731
        return jax.grad(flax_loss, (0, 1))(tree, x), jax.grad(ours_loss, (0, 1))(params, x)

    (g_tree, g_x), (g_params, g_x_ours) = grads(tree, params, x)
    close(g_x_ours, g_x)
    # The converters only regroup leaves, so converting Flax's gradient tree maps it back.
    close(from_flax(g_tree)[1], g_params)


@pytest.mark.parametrize("kind, name", CASES)
def test_to_flax_matches_and_round_trips(kind, name):
    x, _ = data()
    make = {"GRUCell": lj.GRUCell, "SimpleCell": lj.SimpleRNNCell}.get(name, lj.LSTMCell)
    cell = make(H)
    params = randomize(cell.init(jax.random.key(0), I), jax.random.key(1))
    if kind == "nnx" and name == "GRUCell":
        params = params._replace(b_hn=jnp.zeros((H,)))
    peer = to_flax(cell, params, kind=kind, optimized=name == "OptimizedLSTMCell")
    if kind == "linen":
        module, variables = peer
        assert type(module).__name__ == name
        got = nn.RNN(module, return_carry=True).apply({"params": {"cell": variables["params"]}}, x)
        back_cell, back = from_flax(variables)
    else:
        assert type(peer).__name__ == name
        got = nnx.RNN(peer, return_carry=True)(x)
        back_cell, back = from_flax(peer)
    close(got, ours_run(cell, params, x))
    close(back, params)
    assert back_cell.hidden_size == H


def test_residual_simple_cell_and_custom_activations():
    x, _ = data()
    peer = nnx.SimpleCell(I, H, residual=True, activation_fn=jax.nn.relu, rngs=nnx.Rngs(0))
    cell, params = from_flax(peer)
    assert cell.activation == "relu"
    close(ours_run(cell, params, x), nnx.RNN(peer, return_carry=True)(x))
    lstm = nnx.LSTMCell(I, H, gate_fn=jax.nn.hard_sigmoid, rngs=nnx.Rngs(0))
    cell, params = from_flax(lstm)
    assert cell.gate_activation == "hard_sigmoid"
    close(ours_run(cell, params, x), nnx.RNN(lstm, return_carry=True)(x))


@pytest.mark.slow
def test_nnx_rnn_and_bidirectional_convert_to_stacked_layers():
    x, _ = data()
    lengths = jnp.array([5, 2])
    fwd, bwd = (nnx.OptimizedLSTMCell(I, H, rngs=nnx.Rngs(k)) for k in (0, 1))
    bi = nnx.Bidirectional(nnx.RNN(fwd), nnx.RNN(bwd))
    layer, params = from_flax(bi)
    assert layer.bidirectional and layer.num_layers == 1
    _, ys = layer.apply(params, x, lengths=lengths)
    valid = (jnp.arange(T)[None] < lengths[:, None])[..., None]  # (B, T, 1)
    close(jnp.where(valid, ys, 0.0), jnp.where(valid, bi(x, seq_lengths=lengths), 0.0))
    back = to_flax(layer, params, optimized=True)
    assert type(back).__name__ == "Bidirectional"
    close(back(x), bi(x))
    layer1, params1 = from_flax(nnx.RNN(fwd, time_major=True))
    assert layer1.time_major and not layer1.bidirectional
    xt = jnp.swapaxes(x, 0, 1)
    close(layer1.apply(params1, xt)[1], nnx.RNN(fwd, time_major=True)(xt))
    ours = ljnnx.Bidirectional(ljnnx.RNN(ljnnx.GRUCell(I, H, rngs=nnx.Rngs(2))),
                               ljnnx.RNN(ljnnx.GRUCell(I, H, rngs=nnx.Rngs(3))))  # fmt: skip
    layer2, params2 = from_flax(ours)
    close(layer2.apply(params2, x)[1], ours(x))


def test_bad_inputs_are_clear_errors():
    with pytest.raises(
        TypeError, match=r"`from_flax`: `peer` must be a Flax NNX LSTMCell.*got int"
    ):
        from_flax(3)
    with pytest.raises(ValueError, match=r"`from_flax`: `peer` has keys \['foo'\], which match no"):
        from_flax({"foo": {"kernel": jnp.ones((2, 2))}})
    tree = flax_tree("linen", "LSTMCell")
    tree["hf"] = {"kernel": tree["hf"]["kernel"]}
    with pytest.raises(ValueError, match=r"`from_flax`: `peer` is missing an entry.*'bias'"):
        from_flax(tree)
    tree = flax_tree("linen", "GRUCell")
    tree["hz"]["kernel"] = jnp.ones((H, H + 1))
    with pytest.raises(ValueError, match=r"`from_flax`: `params.w_h` must have shape"):
        from_flax(tree)
    cell = lj.GRUCell(H)
    params = randomize(cell.init(jax.random.key(0), I), jax.random.key(1))
    with pytest.raises(ValueError, match=r"`params.b_hn` is not zero, but flax.nnx.GRUCell"):
        to_flax(cell, params)
    with pytest.raises(ValueError, match=r"`kind` must be 'nnx' or 'linen'; got 'haiku'"):
        to_flax(cell, params, kind="haiku")
    peep = lj.LSTMCell(H, peephole=True)
    with pytest.raises(ValueError, match=r"`layer` has peephole=True, which Flax cannot express"):
        to_flax(peep, peep.init(jax.random.key(0), I))
    deep = lj.LSTM(H, num_layers=2)
    with pytest.raises(ValueError, match=r"num_layers=1.*got kind='nnx', num_layers=2"):
        to_flax(deep, deep.init(jax.random.key(0), I))
    with pytest.raises(ValueError, match=r"`peer.reverse=True` has no StackedRNN equivalent"):
        from_flax(nnx.RNN(nnx.GRUCell(I, H, rngs=nnx.Rngs(0)), reverse=True))
