"""Keras 3 interop: converted layers match keras.layers' outputs, states and gradients."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

import lstm_jax as lj  # noqa: E402
from lstm_jax.interop import from_keras, to_keras  # noqa: E402
from tests.helpers import randomize  # noqa: E402

pytestmark = pytest.mark.loose_promotion  # Keras' own ops rely on implicit promotion
B, T, I, H = 3, 6, 2, 4
TOL = dict(rtol=1e-5, atol=1e-5)
LENGTHS = np.array([6, 2, 4])


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)


def keras_layer(kind, bidirectional=False, **kw):
    layer = getattr(keras.layers, kind)(H, **kw)
    layer = keras.layers.Bidirectional(layer) if bidirectional else layer
    layer.build((None, T, I))
    rng = np.random.default_rng(0)
    for v in layer.weights:  # every weight random, biases included
        v.assign(0.5 * rng.normal(size=v.shape).astype(np.float32))
    return layer


def zrh(a):  # r, z, n blocks -> Keras' z, r, h
    r, z, n = np.split(np.asarray(a), 3, axis=-1)
    return np.concatenate([z, r, n], axis=-1)


def keras_grads_of(cell, g):
    """Our gradient in Keras' layout, written from Keras' equations (both GRU bias rows see
    the summed r, z biases; the recurrent row's h block is b_hn)."""
    if not isinstance(cell, lj.GRUCell):
        return [g.w_x, g.w_h] + ([] if g.b is None else [g.b])
    out = [zrh(g.w_x), zrh(g.w_h)]
    if g.b is None:
        return out
    if not cell.reset_after:
        return out + [zrh(g.b)]
    rec = np.concatenate([np.asarray(g.b)[: 2 * H], np.asarray(g.b_hn)])
    return out + [np.stack([zrh(g.b), zrh(rec)])]


CASES = [
    ("LSTM", False, {"use_bias": False, "recurrent_activation": "hard_sigmoid"}, False),
    ("GRU", False, {}, True),
    ("GRU", False, {"reset_after": False, "activation": "softsign"}, False),
    ("SimpleRNN", False, {"activation": "relu"}, False),
    ("LSTM", True, {}, True),
    ("GRU", True, {"reset_after": False}, True),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind, bidirectional, kw, masked", CASES)
def test_from_keras_matches_outputs_states_and_gradients(kind, bidirectional, kw, masked):
    peer = keras_layer(kind, bidirectional, return_sequences=True, **kw)
    layer, params = from_keras(peer)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    w = jax.random.normal(jax.random.key(2), (B, T, layer.output_size))
    mask = jnp.asarray(np.arange(T)[None] < LENGTHS[:, None]) if masked else None
    lengths = jnp.asarray(LENGTHS) if masked else None
    valid = jnp.ones((B, T, 1), bool) if mask is None else mask[..., None]

    def keras_loss(weights, x):
        ys, _ = peer.stateless_call(weights, frozen, x, mask=mask)
        return jnp.sum(jnp.where(valid, ys, 0.0) * w), ys

    def ours_loss(params, x):
        _, ys = layer.apply(params, x, lengths=lengths)
        return jnp.sum(jnp.where(valid, ys, 0.0) * w), ys

    weights = [v.value for v in peer.trainable_variables]
    frozen = [v.value for v in peer.non_trainable_variables]  # dropout seed state

    @jax.jit
    def both(weights, params, x):
        keras_side = jax.value_and_grad(keras_loss, (0, 1), has_aux=True)(weights, x)
        ours_side = jax.value_and_grad(ours_loss, (0, 1), has_aux=True)(params, x)
        return keras_side, ours_side

    ((_, ys_k), (g_w, g_xk)), ((_, ys_o), (g_p, g_xo)) = both(weights, params, x)
    close(jnp.where(valid, ys_o, 0.0), jnp.where(valid, ys_k, 0.0))
    close(g_xo, g_xk)
    mapped = keras_grads_of(layer.cell, g_p[0].forward)
    if bidirectional:
        mapped += keras_grads_of(layer.cell, g_p[0].backward)
    assert len(mapped) == len(g_w)
    for a, b in zip(mapped, g_w, strict=True):
        close(a, b)


def test_final_states_and_last_output():
    peer = keras_layer("LSTM", return_state=True)
    layer, params = from_keras(peer)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    last, h, c = peer(x)
    carry, _ = layer.apply(params, x)
    close(carry[-1].forward.h, last)
    close(carry[-1].forward.h, h)
    close(carry[-1].forward.c, c)
    bi = keras_layer("GRU", bidirectional=True)  # return_sequences=False
    layer, params = from_keras(bi)
    carry, _ = layer.apply(params, x)
    close(jnp.concatenate([carry[-1].forward, carry[-1].backward], axis=-1), bi(x))


@pytest.mark.parametrize("kind, bidirectional, kw, masked", CASES[:5])
def test_to_keras_matches_and_round_trips(kind, bidirectional, kw, masked):
    peer = keras_layer(kind, bidirectional, return_sequences=True, **kw)
    layer, params = from_keras(peer)
    params = randomize(params, jax.random.key(3))  # e.g. a nonzero b_hn, which Keras can hold
    back = to_keras(layer, params)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    close(back(x), layer.apply(params, x)[1])
    layer2, params2 = from_keras(back)
    assert layer2 == layer
    jax.tree.map(close, params2, params)
    layer3, params3 = from_keras(
        [np.asarray(v.value) for v in back.weights],
        reset_after=kw.get("reset_after", True),
        activation=kw.get("activation", "tanh"),
        recurrent_activation=kw.get("recurrent_activation", "sigmoid"),
    )
    assert layer3 == layer
    jax.tree.map(close, params3, params)


@pytest.mark.slow
def test_stacked_layers_become_a_sequential():
    layer = lj.LSTM(H, num_layers=2, bidirectional=True, dropout=0.2)
    params = randomize(layer.init(jax.random.key(0), I), jax.random.key(1))
    model = to_keras(layer, params, return_sequences=False)
    assert [type(m).__name__ for m in model.layers] == [
        "Bidirectional", "Dropout", "Bidirectional",
    ]  # fmt: skip
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    carry, _ = layer.apply(params, x)
    last = jnp.concatenate([carry[-1].forward.h, carry[-1].backward.h], axis=-1)
    close(model(x), last)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TypeError, match=r"`from_keras`: `peer` must be a keras.layers.LSTM.*Dense"):
        from_keras(keras.layers.Dense(3))
    with pytest.raises(ValueError, match=r"`from_keras`: `peer` \(\w+\) has no weights yet"):
        from_keras(keras.layers.LSTM(3))
    with pytest.raises(ValueError, match=r"`peer.go_backwards=True` outside a Bidirectional"):
        from_keras(keras_layer("GRU", go_backwards=True))
    bi = keras.layers.Bidirectional(keras.layers.LSTM(H), merge_mode="sum")
    bi.build((None, T, I))
    with pytest.raises(ValueError, match=r"`peer.merge_mode` must be 'concat'.*got 'sum'"):
        from_keras(bi)
    with pytest.raises(ValueError, match=r"`recurrent_activation` must be one of .*got 'selu'"):
        from_keras(keras_layer("LSTM", recurrent_activation="selu"))
    w = [np.asarray(v.value) for v in keras_layer("LSTM").weights]
    with pytest.raises(ValueError, match=r"`peer` bias must have shape \(16,\); got \(15,\)"):
        from_keras([w[0], w[1], w[2][:15]])
    with pytest.raises(ValueError, match=r"must have 2 or 3 arrays .* got 5"):
        from_keras(w + w[:2])
    layer = lj.LSTM(H, time_major=True)
    with pytest.raises(ValueError, match=r"`to_keras`: `layer` has time_major=True"):
        to_keras(layer, layer.init(jax.random.key(0), I))
    with pytest.raises(TypeError, match=r"`to_keras`: `layer` must be a StackedRNN"):
        to_keras(lj.LSTMCell(H), None)
    layer = lj.LSTM(H, peephole=True)
    with pytest.raises(ValueError, match=r"peephole=True, which Keras cannot express"):
        to_keras(layer, layer.init(jax.random.key(0), I))
