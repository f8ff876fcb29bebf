"""lstm_jax.nnx: drop-in replacements for flax.nnx's recurrent modules, checked against them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")

from lstm_jax import nnx as ljnnx  # noqa: E402

B, T, I, H = 3, 6, 2, 4
NAMES = ["LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell"]
LENGTHS = jnp.array([6, 2, 4])


def close(a, b, tol=1e-5):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=tol, atol=tol), a, b)


def pair(name, seed=0, **kw):
    """Flax's cell and ours, built from the same seed, with biases made nonzero in both."""
    theirs = getattr(nnx, name)(I, H, rngs=nnx.Rngs(seed), **kw)
    state = nnx.state(theirs, nnx.Param)
    noisy = jax.tree.map(
        lambda a: a + jnp.linspace(-0.2, 0.3, a.size, dtype=a.dtype).reshape(a.shape), state
    )
    nnx.update(theirs, noisy)
    ours = getattr(ljnnx, name)(I, H, rngs=nnx.Rngs(seed), **kw)
    nnx.update(ours, nnx.state(theirs, nnx.Param))
    return theirs, ours


def xs(time_major=False):
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    return jnp.swapaxes(x, 0, 1) if time_major else x


def valid_mask(time_major=False):
    m = (jnp.arange(T)[None] < LENGTHS[:, None])[..., None]  # (B, T, 1)
    return jnp.swapaxes(m, 0, 1) if time_major else m


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_param_tree_and_same_step(name):
    theirs = getattr(nnx, name)(I, H, rngs=nnx.Rngs(0))
    ours = getattr(ljnnx, name)(I, H, rngs=nnx.Rngs(0))
    close(
        nnx.to_pure_dict(nnx.state(ours, nnx.Param)),
        nnx.to_pure_dict(nnx.state(theirs, nnx.Param)),
        0,
    )
    theirs, ours = pair(name)
    carry = jax.tree.map(lambda a: a + 0.5, theirs.initialize_carry((B, I), rngs=nnx.Rngs(0)))
    close(ours.initialize_carry((B, I)), theirs.initialize_carry((B, I), rngs=nnx.Rngs(0)))
    x = xs()[:, 0]
    close(ours(carry, x), theirs(carry, x))


# (cell, RNN constructor options, call options); seq_lengths are used where given.
RNN_CASES = [
    ("LSTMCell", {}, {}),
    ("OptimizedLSTMCell", {"time_major": True, "return_carry": True}, {}),
    ("GRUCell", {"reverse": True}, {}),
    ("SimpleCell", {"reverse": True, "keep_order": True, "return_carry": True}, {}),
    ("LSTMCell", {"return_carry": True}, {"seq_lengths": LENGTHS}),
    ("GRUCell", {"reverse": True, "return_carry": True}, {"seq_lengths": LENGTHS}),
    (
        "OptimizedLSTMCell",
        {"unroll": 3},
        {"reverse": True, "keep_order": True, "seq_lengths": LENGTHS},
    ),
    ("SimpleCell", {"time_major": True}, {"return_carry": True, "seq_lengths": LENGTHS}),
]


@pytest.mark.parametrize("name, options, call", RNN_CASES)
def test_rnn_matches_flax_across_options(name, options, call):
    theirs, ours = pair(name)
    tm = call.get("time_major", options.get("time_major", False))
    x = xs(tm)
    got = ljnnx.RNN(ours, **options)(x, **call)
    want = nnx.RNN(theirs, **options)(x, **call)
    if "seq_lengths" not in call:
        close(got, want)
        return
    # Flax runs on through the padding; here padded outputs are zero. Valid steps come first
    # in input order and in (reversed) processing order alike, so one mask serves both.
    returns_carry = call.get("return_carry", options.get("return_carry", False))
    (c_got, y_got), (c_want, y_want) = (got, want) if returns_carry else ((0, got), (0, want))
    m = valid_mask(tm)
    close(jnp.where(m, y_got, 0.0), jnp.where(m, y_want, 0.0))
    np.testing.assert_array_equal(jnp.where(m, 0.0, y_got), 0.0)
    close(c_got, c_want)


@pytest.mark.slow
def test_bidirectional_matches_flax():
    (f_t, f_o), (b_t, b_o) = pair("LSTMCell", 0), pair("LSTMCell", 1)
    x = xs(time_major=True)
    want = nnx.Bidirectional(nnx.RNN(f_t), nnx.RNN(b_t), time_major=True, return_carry=True)
    got = ljnnx.Bidirectional(ljnnx.RNN(f_o), ljnnx.RNN(b_o), time_major=True, return_carry=True)
    close(got(x), want(x))
    (c_got, y_got), (c_want, y_want) = got(x, seq_lengths=LENGTHS), want(x, seq_lengths=LENGTHS)
    m = valid_mask(time_major=True)
    close(c_got, c_want)
    close(jnp.where(m, y_got, 0.0), jnp.where(m, y_want, 0.0))


def test_training_step_gradients_equal_flax():
    theirs, ours = pair("GRUCell")
    x = xs()

    def loss(rnn):
        return jnp.sum(jnp.sin(rnn(x)))

    g_t = nnx.grad(loss)(nnx.RNN(theirs))
    g_o = nnx.jit(nnx.grad(loss))(ljnnx.RNN(ours))
    close(nnx.to_pure_dict(g_o), nnx.to_pure_dict(g_t))


def test_any_nnx_cell_runs_in_our_rnn():
    theirs, _ = pair("LSTMCell")
    x = xs()
    got = ljnnx.RNN(theirs, return_carry=True)(x, seq_lengths=LENGTHS)
    want = nnx.RNN(theirs, return_carry=True)(x, seq_lengths=LENGTHS)
    close(got[0], want[0])
    m = valid_mask()
    close(jnp.where(m, got[1], 0.0), jnp.where(m, want[1], 0.0))


def test_carry_init_draws_like_flax():
    init = nnx.initializers.normal(1.0)
    theirs, ours = pair("LSTMCell")
    got = ours.initialize_carry((B, I), rngs=nnx.Rngs(carry=3), carry_init=init)
    want = theirs.initialize_carry((B, I), rngs=nnx.Rngs(carry=3), carry_init=init)
    close(got, want, 0)
    assert float(jnp.abs(got[0] - got[1]).max()) > 0  # c and h are separate draws


def test_bad_inputs_are_clear_errors():
    _, ours = pair("LSTMCell")
    with pytest.raises(ValueError, match=r"`LSTMCell.initialize_carry`: `rngs` must be given"):
        ours.initialize_carry((B, I), carry_init=nnx.initializers.normal(1.0))
    with pytest.raises(TypeError, match=r"`RNN`: `rngs` must be an nnx.Rngs, RngStream or bool"):
        ljnnx.RNN(ours, rngs="seed")
    with pytest.raises(ValueError, match=r"`scan`: `xs` has 5 features but `params` expect 2"):
        ljnnx.RNN(ours)(jnp.ones((B, T, 5)))
