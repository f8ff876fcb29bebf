"""Sequence-to-sequence parts: Embedding, attention with a query, StackedRNN.step, the
bidirectional final state, and README's encoder-decoder, each against a float64 NumPy oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FLOAT, X64, assert_close, normal, randomize
from jax.test_util import check_grads
from test_readme import block, run

import lstm_jax as lj

BATCH = [(), (2,), (2, 3)]
only_x64 = pytest.mark.skipif(not X64, reason="float64 needs JAX_ENABLE_X64=1")


def f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# -- Embedding ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCH, ids=str)
def test_embedding_is_a_row_lookup(batch):
    embed = lj.Embedding(7, 3, param_dtype=FLOAT)
    params = embed.init(jax.random.key(0))
    ids = jax.random.randint(jax.random.key(1), batch, 0, 7)
    out = embed.apply(params, ids)
    assert out.shape == (*batch, 3) and out.dtype == params.table.dtype
    np.testing.assert_array_equal(out, np.asarray(params.table)[np.asarray(ids)])


@pytest.mark.x64
def test_embedding_gradient_is_a_scatter_add():
    embed = lj.Embedding(5, 2)
    params = embed.init(jax.random.key(0))
    ids = jnp.array([[0, 3, 3], [4, 0, 3]])
    w = np.asarray(normal(jax.random.key(1), (2, 3, 2), jnp.float32))
    grad = jax.grad(lambda p: jnp.sum(embed.apply(p, ids) * w))(params).table
    ref = np.zeros((5, 2), np.float32)
    np.add.at(ref, np.asarray(ids), w)
    np.testing.assert_allclose(grad, ref, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(grad)[[1, 2]], 0.0)  # rows never read


def test_embedding_init_follows_param_dtype_and_draws_unit_normal():
    table = lj.Embedding(400, 50).init(jax.random.key(0)).table
    assert table.dtype == jnp.float32
    assert abs(float(jnp.std(table)) - 1.0) < 0.02 and abs(float(jnp.mean(table))) < 0.02
    bf = lj.Embedding(4, 3, param_dtype=jnp.bfloat16)
    out = bf.apply(bf.init(jax.random.key(0)), jnp.array([1, 2]))
    assert out.dtype == jnp.bfloat16
    glorot = lj.Embedding(4, 3, embedding_init="zeros").init(jax.random.key(0))
    np.testing.assert_array_equal(glorot.table, 0.0)


def test_embedding_attend_scores_every_id():
    embed = lj.Embedding(6, 4, param_dtype=FLOAT)
    params = embed.init(jax.random.key(0))
    x = normal(jax.random.key(1), (2, 5, 4))
    assert_close(embed.attend(params, x), f64(x) @ f64(params.table).T)
    with pytest.raises(ValueError, match=r"`Embedding.attend`: `x` must have 4 features"):
        embed.attend(params, jnp.ones((2, 3)))


def test_embedding_errors_name_the_argument():
    embed = lj.Embedding(5, 2)
    params = embed.init(jax.random.key(0))
    with pytest.raises(TypeError, match=r"`Embedding.apply`: `ids` must be an integer array .*"
                       r"got dtype=float(32|64), shape=\(2,\)"):  # fmt: skip
        embed.apply(params, jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"`ids` must lie in \[0, vocab_size=5\); got values "
                       r"from -1 to 5"):  # fmt: skip
        embed.apply(params, jnp.array([[-1, 2], [5, 0]]))
    with pytest.raises(TypeError, match=r"`params` must be an EmbeddingParams"):
        embed.apply({"table": params.table}, jnp.array([1]))
    with pytest.raises(ValueError, match=r"`params.table` must have shape \(5, 2\)"):
        embed.apply(lj.EmbeddingParams(jnp.ones((4, 2))), jnp.array([1]))
    with pytest.raises(ValueError, match=r"`Embedding.init`: `input_size` must be None or "):
        embed.init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match=r"`Embedding`: `vocab_size` must be a positive int"):
        lj.Embedding(0, 2)
    with pytest.raises(ValueError, match=r"`Embedding`: `embedding_init` must be a callable"):
        lj.Embedding(3, 2, embedding_init="nope")


def test_embedding_under_jit_gives_nan_rows_for_out_of_range_ids():
    embed = lj.Embedding(5, 2)
    params = embed.init(jax.random.key(0))
    out = jax.jit(embed.apply)(params, jnp.array([5, -1, 2]))
    assert np.isnan(out[:2]).all()
    np.testing.assert_array_equal(out[2], params.table[2])


# -- attention with a query -----------------------------------------------------------------


def softmax_ref(e, n):
    """Weights over the first ``n`` of ``e``; zeros elsewhere, all zeros for n = 0."""
    w = np.zeros_like(e)
    if n:
        z = np.exp(e[:n] - e[:n].max())
        w[:n] = z / z.sum()
    return w


def bahdanau_ref(P, q, k):
    return np.tanh(k @ P.w_k + q @ P.w_q + P.b) @ P.v


def luong_ref(P, q, k):
    return k @ (q if P.w is None else q @ P.w)


LAYERS = [
    ("bahdanau", lambda: lj.BahdanauAttention(5, param_dtype=FLOAT), bahdanau_ref, 4),
    ("dot", lambda: lj.LuongAttention("dot", param_dtype=FLOAT), luong_ref, 3),
    ("general", lambda: lj.LuongAttention("general", param_dtype=FLOAT), luong_ref, 4),
]


@pytest.mark.x64
@pytest.mark.parametrize("name, make, ref, Q", LAYERS, ids=[c[0] for c in LAYERS])
@pytest.mark.parametrize("batch", [(4,), (2, 2)], ids=str)
def test_attention_matches_numpy_and_masks_padding(name, make, ref, Q, batch):
    att, T, D = make(), 6, 3
    params = randomize(att.init(jax.random.key(0), D, Q), jax.random.key(1))
    q = normal(jax.random.key(2), (*batch, Q))
    k = normal(jax.random.key(3), (*batch, T, D))
    lengths = jnp.array([6, 2, 0, 1]).reshape(batch)
    apply = jax.jit(att.apply)
    ctx, w = apply(params, q, k, lengths)
    assert ctx.shape == (*batch, D) and w.shape == (*batch, T)
    assert ctx.dtype == w.dtype == FLOAT
    P, qs, ks = f64(params), f64(q).reshape(4, Q), f64(k).reshape(4, T, D)
    for b, n in enumerate(np.asarray(lengths).reshape(4)):
        alpha = softmax_ref(ref(P, qs[b], ks[b]), n)
        assert_close(w.reshape(4, T)[b], alpha)
        assert_close(ctx.reshape(4, D)[b], alpha @ ks[b])
    assert np.all(np.asarray(w).reshape(4, T)[[1, 2, 3]][:, 2:] == 0.0)  # exactly zero
    # Padding never leaks into the result, and no NaN appears for length 0.
    k2 = jnp.where(lj.sequence_mask(lengths, T)[..., None], k, 1e3)
    np.testing.assert_array_equal(apply(params, q, k2, lengths)[0], ctx)
    grad = jax.jit(jax.grad(lambda p, k: jnp.sum(att.apply(p, q, k, lengths)[0]), (0, 1)))
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grad(params, k)))
    # Without lengths every step counts.
    assert_close(apply(params, q, k)[1].reshape(4, T)[0], softmax_ref(ref(P, qs[0], ks[0]), T))


@pytest.mark.parametrize("name, make, ref, Q", LAYERS, ids=[c[0] for c in LAYERS])
def test_attention_broadcasts_every_decoder_step_at_once(name, make, ref, Q):
    att, B, S, T, D = make(), 2, 3, 4, 3
    params = randomize(att.init(jax.random.key(0), D, Q), jax.random.key(1))
    qs = normal(jax.random.key(2), (B, S, Q))
    k = normal(jax.random.key(3), (B, T, D))
    lengths = jnp.array([4, 2])
    apply = jax.jit(att.apply)
    ctx, w = apply(params, qs, k[:, None], lengths[:, None])  # (B, S, D), (B, S, T)
    assert ctx.shape == (B, S, D) and w.shape == (B, S, T)
    for s in range(S):
        c_s, w_s = apply(params, qs[:, s], k, lengths)
        assert_close(ctx[:, s], c_s)
        assert_close(w[:, s], w_s)


@pytest.mark.x64
@only_x64
@pytest.mark.parametrize("name, make, ref, Q", LAYERS, ids=[c[0] for c in LAYERS])
def test_attention_gradients_and_float64(name, make, ref, Q):
    att = make()
    params = randomize(att.init(jax.random.key(0), 3, Q), jax.random.key(1))
    assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(params))
    q, k = normal(jax.random.key(2), (2, Q)), normal(jax.random.key(3), (2, 5, 3))
    lengths = jnp.array([5, 3])
    check_grads(lambda p, q, k: att.apply(p, q, k, lengths), (params, q, k), 2, modes=["rev"])
    # float32 params with float64 inputs compute in float64.
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    ctx, w = att.apply(p32, q, k, lengths)
    assert ctx.dtype == w.dtype == jnp.float64


def test_attention_errors_name_the_argument():
    att = lj.BahdanauAttention(4)
    params = att.init(jax.random.key(0), 3, 2)
    q, k = jnp.ones((2, 2)), jnp.ones((2, 5, 3))
    where = r"`BahdanauAttention.apply`: "
    with pytest.raises(ValueError, match=where + r"the leading dims of `query` \(3,\) and `keys`"):
        att.apply(params, jnp.ones((3, 2)), k)
    with pytest.raises(ValueError, match=r"`lengths` must have the leading shape of `keys`, "):
        att.apply(params, q, k, jnp.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"`lengths` must lie in \[0, T=5\]; got values from"):
        att.apply(params, q, k, jnp.array([6, 2]))
    with pytest.raises(TypeError, match=r"`lengths` must be an integer array of shape \(2,\)"):
        att.apply(params, q, k, jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"`params.w_q` must have shape \(3, 4\)"):
        att.apply(params, jnp.ones((2, 3)), k)
    with pytest.raises(TypeError, match=r"`query` must be a floating array"):
        att.apply(params, jnp.ones((2, 2), jnp.int32), k)
    with pytest.raises(TypeError, match=r"`params` must be BahdanauParams"):
        att.apply(lj.LuongParams(), q, k)
    with pytest.raises(ValueError, match=r"`LuongAttention`: `kind` must be 'dot' or 'general'"):
        lj.LuongAttention("concat")
    with pytest.raises(ValueError, match=r"`LuongAttention.init`: kind='dot' scores q . k, so"):
        lj.LuongAttention().init(jax.random.key(0), 3, 2)
    with pytest.raises(ValueError, match=r"kind='dot' needs `query` and `keys` of the same"):
        lj.LuongAttention().apply(lj.LuongParams(), q, k)


def test_attention_under_jit_gives_nan_for_out_of_range_lengths():
    att = lj.LuongAttention()
    q, k = jnp.ones((2, 3)), jnp.ones((2, 4, 3))
    ctx, w = jax.jit(att.apply)(lj.LuongParams(), q, k, jnp.array([5, 1]))
    assert np.isnan(ctx).all() and np.isnan(w).all()


# -- StackedRNN.step and the bidirectional final state --------------------------------------

STACKS = [
    lambda: lj.LSTM(4, num_layers=2, param_dtype=FLOAT),
    lambda: lj.LSTM(5, proj_size=3, param_dtype=FLOAT),
    lambda: lj.GRU(4, num_layers=3, param_dtype=FLOAT),
    lambda: lj.SimpleRNN(4, param_dtype=FLOAT, time_major=True),
]


CASES = [(0, ()), (0, (2, 3)), (1, (2,)), (2, (2,)), (3, (2,))]


@pytest.mark.parametrize("case", CASES, ids=["lstm2-()", "lstm2-(2,3)", "lstmp", "gru3", "rnn-tm"])
def test_step_equals_apply_one_step_at_a_time(case):
    rnn, T, batch = STACKS[case[0]](), 3, case[1]
    params = randomize(rnn.init(jax.random.key(0), 3), jax.random.key(1))
    xs = normal(jax.random.key(2), (*batch, T, 3))
    seq = jnp.moveaxis(xs, -2, 0) if rnn.time_major else xs
    carry, ys = rnn.apply(params, seq)
    ys = jnp.moveaxis(ys, 0, -2) if rnn.time_major else ys
    c, step = None, jax.jit(rnn.step)
    for t in range(T):
        c, y = rnn.step(params, c, xs[..., t, :]) if t == 0 else step(params, c, xs[..., t, :])
        assert_close(y, ys[..., t, :])
    jax.tree.map(assert_close, c, carry)
    # One step from a given carry is apply on a length-1 sequence.
    one = xs[..., :1, :] if not rnn.time_major else jnp.moveaxis(xs[..., :1, :], -2, 0)
    c1, y1 = step(params, carry, xs[..., 0, :])
    c_ref, y_ref = rnn.apply(params, one, carry)
    assert_close(y1, y_ref[0] if rnn.time_major else y_ref[..., 0, :])
    jax.tree.map(assert_close, c1, c_ref)


def test_step_refuses_bidirectional_stacks_and_bad_arguments():
    bi = lj.LSTM(4, bidirectional=True)
    with pytest.raises(ValueError, match=r"`StackedRNN.step`: a bidirectional stack cannot run"):
        bi.step(bi.init(jax.random.key(0), 3), None, jnp.ones((2, 3)))
    rnn = lj.LSTM(4, num_layers=2)
    params = rnn.init(jax.random.key(0), 3)
    with pytest.raises(TypeError, match=r"`params` must be a tuple of 2 LayerParams.*\n.*`carry`"):
        rnn.step(params[:1], (1, 2), jnp.ones((2, 3)))
    with pytest.raises(TypeError, match=r"`x` must be an array of shape \(..., input_size\)"):
        rnn.step(params, None, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"has 5 features but `params` expect 3"):
        rnn.step(params, None, jnp.ones((2, 5)))


MERGES = {
    "concat": lambda f, b: np.concatenate([f, b], -1),
    "sum": lambda f, b: f + b,
    "mean": lambda f, b: (f + b) / 2,
}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_final_merges_each_layer(cell):
    make = lj.LSTM if cell == "lstm" else lj.GRU
    enc = make(4, num_layers=2, bidirectional=True, param_dtype=FLOAT)
    params = enc.init(jax.random.key(0), 3)
    carry, _ = enc.apply(params, normal(jax.random.key(1), (2, 6, 3)), lengths=jnp.array([6, 2]))
    for merge, fn in MERGES.items():
        start = lj.bidirectional_final(carry, merge)
        assert len(start) == 2 and all(s.backward is None for s in start)
        for s, c in zip(start, carry, strict=True):
            leaves = map(jax.tree.leaves, (s.forward, c.forward, c.backward))
            for m, f, b in zip(*leaves, strict=True):
                assert_close(m, fn(f64(f), f64(b)))
    # It is the carry of a unidirectional decoder of twice the size.
    dec = make(8, num_layers=2, param_dtype=FLOAT)
    dec_params = dec.init(jax.random.key(2), 5)
    xs = normal(jax.random.key(3), (2, 3, 5))
    start = lj.bidirectional_final(carry)
    _, ys = jax.jit(dec.apply)(dec_params, xs, start)
    assert ys.shape == (2, 3, 8)
    assert_close(dec.step(dec_params, start, xs[:, 0])[1], ys[:, 0])


def test_bidirectional_final_errors_and_passthrough():
    uni = lj.LSTM(4)
    carry, _ = uni.apply(uni.init(jax.random.key(0), 3), jnp.ones((2, 4, 3), jnp.float32))
    assert lj.bidirectional_final(carry) == carry
    with pytest.raises(ValueError, match=r"`bidirectional_final`: `merge` must be one of"):
        lj.bidirectional_final(carry, "max")
    with pytest.raises(TypeError, match=r"`carry` must be the tuple of LayerState"):
        lj.bidirectional_final(carry[0].forward)


# -- README: an encoder-decoder with attention ----------------------------------------------


@pytest.mark.slow
@pytest.mark.loose_promotion  # optax.adam's update mixes a Python float with its int32 count
def test_readme_encoder_decoder_learns_to_reverse_digit_strings():
    if X64:
        pytest.skip("a float32 training run; the float64 pass checks the parts above")
    ns = run(block("# An encoder-decoder with attention"))
    xs, ys, lengths = ns["batch"](jax.random.key(123), 1000)  # strings it never trained on
    pred = ns["greedy"](ns["params"], xs, lengths)
    valid = jnp.arange(ns["T"])[None, :] < lengths[:, None]
    exact = float(jnp.mean(jnp.all(jnp.where(valid, pred == ys, True), axis=1)))
    assert exact >= 0.95, exact  # README states the measured accuracy
    assert float(ns["loss"]) < 0.1
