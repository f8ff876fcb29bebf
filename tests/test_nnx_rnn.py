"""lstm_jax.nnx.RNN / Bidirectional against flax.nnx's: options, lengths, rngs, user cells."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")

from test_nnx import close, pure  # noqa: E402

from lstm_jax import nnx as ljnnx  # noqa: E402
from lstm_jax.interop import from_flax  # noqa: E402

B, T, I, H = 3, 5, 2, 4
LENGTHS = jnp.array([5, 2, 0])  # full, padded, and empty sequences


def xs(time_major=False):
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    return jnp.swapaxes(x, 0, 1) if time_major else x


def pair(name, seed=0):
    """Flax's cell and ours with the same (nonzero-bias) params."""
    theirs = getattr(nnx, name)(I, H, rngs=nnx.Rngs(seed))
    state = nnx.state(theirs, nnx.Param)
    nnx.update(
        theirs, jax.tree.map(lambda a: a + jnp.linspace(-0.3, 0.3, a.size).reshape(a.shape), state)
    )
    ours = getattr(ljnnx, name)(I, H, rngs=nnx.Rngs(seed + 1))
    nnx.update(ours, nnx.state(theirs))
    return theirs, ours


# (cell, RNN constructor options, call options). Outputs are compared at every step, padding
# included: both run on through it, as Flax does.
CASES = [
    ("LSTMCell", {}, {}),
    ("OptimizedLSTMCell", {"time_major": True, "return_carry": True, "unroll": 2}, {}),
    ("GRUCell", {"reverse": True}, {"seq_lengths": LENGTHS}),
    ("SimpleCell", {"reverse": True, "keep_order": True, "return_carry": True}, {}),
    ("LSTMCell", {"return_carry": True}, {"seq_lengths": LENGTHS, "rngs": 5}),
    (
        "GRUCell",
        {"time_major": True},
        {"reverse": True, "return_carry": True, "seq_lengths": LENGTHS},
    ),
    ("OptimizedLSTMCell", {"reverse": True, "keep_order": True}, {"seq_lengths": LENGTHS}),
    (
        "SimpleCell",
        {"state_axes": nnx.StateAxes({nnx.Param: None, ...: nnx.Carry}), "return_carry": True},
        {"seq_lengths": LENGTHS},
    ),
]


@pytest.mark.parametrize("name, options, call", CASES)
def test_rnn_matches_flax_at_every_step(name, options, call):
    theirs, ours = pair(name)
    rnn_t, rnn_o = nnx.RNN(theirs, **options), ljnnx.RNN(ours, **options)
    x = xs(options.get("time_major", False))
    call_t, call_o = dict(call), dict(call)
    if "rngs" in call:  # a fresh nnx.Rngs per call, the same seed for both
        call_t["rngs"], call_o["rngs"] = nnx.Rngs(carry=call["rngs"]), nnx.Rngs(carry=call["rngs"])
    close(rnn_o(x, **call_o), rnn_t(x, **call_t), 1e-5)
    close(pure(rnn_o), pure(rnn_t), 1e-5)  # the carry stream advanced alike, params untouched


def test_mask_padding_gives_frozen_carries_and_zero_outputs():
    theirs, ours = pair("LSTMCell")
    x, L = xs(), jnp.array([5, 2, 3])
    valid = (jnp.arange(T)[None] < L[:, None])[..., None]  # (B, T, 1)
    for reverse in (False, True):
        want_c, want = nnx.RNN(theirs, return_carry=True, reverse=reverse, keep_order=True)(
            x, seq_lengths=L
        )
        rnn = ljnnx.RNN(
            ours, return_carry=True, reverse=reverse, keep_order=True, mask_padding=True
        )
        got_c, got = rnn(x, seq_lengths=L)
        close(got_c, want_c, 1e-5)
        close(jnp.where(valid, got, 0.0), jnp.where(valid, want, 0.0), 1e-5)
        np.testing.assert_array_equal(jnp.where(valid, 0.0, got), 0.0)
    got = ljnnx.RNN(ours, return_carry=True)(x, seq_lengths=jnp.array([0, 5, 5]), mask_padding=True)
    np.testing.assert_array_equal(got[0][1][0], 0.0)  # an empty sequence keeps its initial carry


def dropout_rnn(module, broadcast):
    """A Flax user's cell: a subclass of the library's OptimizedLSTMCell with recurrent dropout."""

    class DropoutLSTM(module.OptimizedLSTMCell):
        def __init__(self, *, rngs, **kw):
            super().__init__(rngs=rngs, **kw)
            self.drop = nnx.Dropout(0.5, deterministic=False, rng_collection="rec", rngs=rngs)

        def __call__(self, carry, x):
            (c, h), _ = super().__call__(carry, x)
            h = self.drop(h)
            return (c, h), h

    cell = DropoutLSTM(in_features=I, hidden_features=H, rngs=nnx.Rngs(0, rec=1))
    return module.RNN(cell, broadcast_rngs="rec" if broadcast else None, return_carry=True)


@pytest.mark.slow
@pytest.mark.parametrize("broadcast", [True, False])
def test_dropout_streams_split_and_advance_as_in_flax(broadcast):
    theirs, ours = dropout_rnn(nnx, broadcast), dropout_rnn(ljnnx, broadcast)
    per_call = 1 if broadcast else T  # one split per call, or one draw per step
    for calls in (1, 2):
        close(ours(xs()), theirs(xs()), 1e-6)
        assert int(ours.cell.drop.rngs.count[...]) == int(theirs.cell.drop.rngs.count[...])
        assert int(ours.cell.drop.rngs.count[...]) == calls * per_call
    masks = ours(xs())[1] == 0  # (B, T, H) dropped units
    assert bool(jnp.all(masks == masks[:, :1])) == broadcast  # broadcast: same mask each step


class UserCell(nnx.RNNCellBase):
    """A user's Elman cell with its own carry layout and output."""

    def __init__(self, rngs):
        self.dense = nnx.Linear(I + H, H, rngs=rngs)

    def __call__(self, carry, x):
        h = jnp.tanh(self.dense(jnp.concatenate([x, carry["h"]], axis=-1)))
        return {"h": h, "n": carry["n"] + 1}, 2 * h

    def initialize_carry(self, input_shape, rngs=None):
        return {"h": jnp.zeros(input_shape[:-1] + (H,)), "n": jnp.zeros(input_shape[:-1])}

    @property
    def num_feature_axes(self):
        return 1


@pytest.mark.parametrize("options", [{}, {"reverse": True, "return_carry": True}])
def test_user_cell_runs_as_in_flax(options):
    cell = UserCell(nnx.Rngs(0))
    got = ljnnx.RNN(cell, **options)(xs(), seq_lengths=LENGTHS)
    close(got, nnx.RNN(cell, **options)(xs(), seq_lengths=LENGTHS), 1e-6)


@pytest.mark.slow
def test_bidirectional_matches_flax():
    (f_t, f_o), (b_t, b_o) = pair("LSTMCell", 0), pair("GRUCell", 1)
    x = xs(time_major=True)
    want = nnx.Bidirectional(nnx.RNN(f_t), nnx.RNN(b_t), time_major=True, return_carry=True)
    got = ljnnx.Bidirectional(ljnnx.RNN(f_o), ljnnx.RNN(b_o), time_major=True, return_carry=True)
    close(got(x, seq_lengths=LENGTHS), want(x, seq_lengths=LENGTHS), 1e-5)
    close(got(x, rngs=nnx.Rngs(carry=2)), want(x, rngs=nnx.Rngs(carry=2)), 1e-5)
    close(pure(got), pure(want), 1e-5)
    merge = lambda a, b: a - b  # noqa: E731
    got = ljnnx.Bidirectional(ljnnx.RNN(f_o), ljnnx.RNN(b_o), merge_fn=merge)(xs())
    close(got, nnx.Bidirectional(nnx.RNN(f_t), nnx.RNN(b_t), merge_fn=merge)(xs()), 1e-5)


@pytest.mark.slow
def test_gradients_under_jit_equal_flax():
    theirs, ours = pair("GRUCell")

    def loss(rnn):
        return jnp.sum(jnp.sin(rnn(xs(), seq_lengths=LENGTHS)))

    g_t = nnx.grad(loss)(nnx.RNN(theirs, reverse=True))
    g_o = nnx.jit(nnx.grad(loss))(ljnnx.RNN(ours, reverse=True))
    close(pure(g_o), pure(g_t), 1e-5)

    def carry_loss(rnn):  # return_carry with seq_lengths: the nnx.scan path
        h, ys = rnn(xs(), seq_lengths=LENGTHS)
        return jnp.sum(h**2) + jnp.sum(ys)

    g_t = nnx.grad(carry_loss)(nnx.RNN(theirs, return_carry=True))
    g_o = nnx.jit(nnx.grad(carry_loss))(ljnnx.RNN(ours, return_carry=True))
    close(pure(g_o), pure(g_t), 1e-5)


@pytest.mark.parametrize("name", ["LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell"])
def test_plain_cells_take_the_rule_and_both_modes_equal_flax(name, monkeypatch):
    """A plain cell runs its core cell's hand-derived rule under ``grad`` (the layers' default;
    the GRU's size threshold is lowered here) and ``scan`` under ``jvp`` on CPU, as the layers
    choose; gradients and tangents equal Flax's own ``nnx.RNN``."""
    import lstm_jax.nnx.rnn as rnn_module

    monkeypatch.setattr("lstm_jax.sequence.fast.GRU_RULE_MIN_HIDDEN_CPU", 1)
    log = []
    for fn in ("fast_scan", "scan"):
        real = getattr(rnn_module, fn)
        monkeypatch.setattr(
            rnn_module, fn, lambda *a, _f=real, _n=fn, **k: (log.append(_n), _f(*a, **k))[1]
        )
    theirs, ours = pair(name)
    rnn_t, rnn_o = nnx.RNN(theirs, reverse=True), ljnnx.RNN(ours, reverse=True)
    x = xs()

    h0 = jnp.linspace(-0.5, 0.5, B * H).reshape(B, H)  # a carry given: no RNG state moves
    carry = (h0, -h0) if "LSTM" in name else h0

    def loss(module, x):
        return jnp.sum(jnp.sin(module(x, initial_carry=carry, seq_lengths=LENGTHS)))

    def split(module):
        graph, params, rest = nnx.split(module, nnx.Param, ...)
        return (lambda p, x: loss(nnx.merge(graph, p, rest), x)), params

    (f_t, p_t), (f_o, p_o) = split(rnn_t), split(rnn_o)
    log.clear()
    close(jax.grad(f_o, argnums=(0, 1))(p_o, x), jax.grad(f_t, argnums=(0, 1))(p_t, x), 1e-5)
    assert set(log) == {"fast_scan"}
    direction = (jax.tree.map(jnp.cos, p_t), jnp.cos(x))
    log.clear()
    close(jax.jvp(f_o, (p_o, x), direction), jax.jvp(f_t, (p_t, x), direction), 1e-5)
    assert set(log) == {"scan" if jax.default_backend() == "cpu" else "fast_scan"}


def test_from_flax_reads_the_default_merge_fn_of_either_class():
    rnn = lambda s: ljnnx.RNN(ljnnx.LSTMCell(I, H, rngs=nnx.Rngs(s)))  # noqa: E731
    bi = ljnnx.Bidirectional(rnn(0), rnn(1))
    layer, params = from_flax(bi)
    close(layer.apply(params, xs())[1], bi(xs()), 1e-5)
    with pytest.raises(ValueError, match=r"`from_flax`: `peer.merge_fn` must be the default"):
        from_flax(ljnnx.Bidirectional(rnn(0), rnn(1), merge_fn=jnp.add))


@pytest.mark.loose_promotion  # under strict promotion both raise TypePromotionError instead
def test_errors_are_flaxs_kinds_with_clear_messages():
    for module in (nnx, ljnnx):
        cell = module.LSTMCell(I, H, rngs=nnx.Rngs(0))
        half = jax.tree.map(
            lambda a: a.astype(jnp.float16), cell.initialize_carry((B, I), nnx.Rngs(0))
        )
        with pytest.raises(TypeError, match="carry"):
            module.RNN(cell)(xs(), initial_carry=half)
        with pytest.raises(ValueError, match="rngs"):
            module.RNN(cell, rngs="seed")
        with pytest.raises(TypeError, match="rngs"):
            module.Bidirectional(module.RNN(cell), module.RNN(cell), rngs="seed")
    with pytest.raises(TypeError, match=r"`RNN`: `initial_carry` has dtype float16, but a step"):
        ljnnx.RNN(cell)(xs(), initial_carry=half)
    with pytest.raises(ValueError, match=r"`RNN`: `seq_lengths` must have the batch shape"):
        ljnnx.RNN(cell)(xs(), seq_lengths=jnp.array([1, 2]))
    with pytest.raises(TypeError, match=r"`RNN`: `seq_lengths` must be an integer array"):
        ljnnx.RNN(cell)(xs(), seq_lengths=jnp.ones(B))
    with pytest.raises(ValueError, match=r"`RNN`: `seq_lengths` must lie in \[0, T=5\]"):
        ljnnx.RNN(cell)(xs(), seq_lengths=jnp.array([1, 6, 2]))
    with pytest.raises(TypeError, match=r"`RNN`: `mask_padding` must be True or False"):
        ljnnx.RNN(cell, mask_padding="yes")
    with pytest.raises(ValueError, match=r"`RNN`: `inputs` has 5 features but the cell expects 2"):
        ljnnx.RNN(cell)(jnp.ones((B, T, 5)))
