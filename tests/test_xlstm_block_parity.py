"""Block-level parity with NX-AI's ``xlstm`` package (PyTorch, float32, CPU: the vanilla sLSTM
backend and the parallel-stabilised mLSTM): ``xlstm``'s ``mLSTMBlock`` / ``sLSTMBlock`` with
random weights, converted by :mod:`lstm_jax.interop.xlstm_weights`, give the outputs of
lstm_jax's blocks (mLSTM in both forms) and the same gradients of a random linear loss with
respect to the input and to every parameter; the converters round-trip and refuse what the
other side cannot hold.

Tolerances (float32), per array: outputs within ``1e-5 * max|y| + 1e-5 * |y|``, gradients
within ``1e-4 * max|g| + 1e-4 * |g|``. The two sides sum in different orders (the mLSTM's
parallel form against a chunkwise or step-by-step scan, the gates' ``(c W_q) w`` against
``c (W_q w)``), and a gradient entry is a sum over ``B T`` positions and a chain of norms,
convolution and cell, of terms as large as the array's largest entry, so its rounding error is
relative to ``max|g|``, not to ``|g|`` (elementwise ``rtol`` alone fails on entries that cancel
to near zero). Measured (varying a little between runs, as threaded sums do): outputs within
7e-7 of ``max|y|``, gradients within 6e-6 of ``max|g|`` except the mLSTM's gate biases (up to
4e-5: two or four entries, each a sum of many large ``dL/di`` or ``dL/df`` terms).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax.interop.xlstm_weights import (
    MLSTM_BLOCK_KEYS,
    SLSTM_BLOCK_KEYS,
    mlstm_block_from_xlstm,
    mlstm_block_to_xlstm,
    slstm_block_from_xlstm,
    slstm_block_to_xlstm,
)

torch = pytest.importorskip("torch")
pytest.importorskip("xlstm")

pytestmark = pytest.mark.slow  # 5 jitted gradient compilations: ~40 s on 2 busy cores

# E, NH, qkv_blocksize, proj_factor, round_to, T, B, chunk, seed; inner widths 32 and 48
MLSTM_CONFIGS = [(16, 2, 4, 2.0, 16, 9, 2, 4, 0), (24, 4, 8, 1.5, 16, 16, 3, 8, 1)]
# E, NH, conv_kernel, ffn proj_factor, round_to, T, B, seed; ffn widths 32 and 64
SLSTM_CONFIGS = [(16, 2, 4, 1.3, 16, 9, 2, 0), (32, 4, 3, 4 / 3, 32, 12, 3, 1)]


def _randomize(peer, seed, scale=0.3):
    """Adds noise to every parameter, so zero gates, zero recurrence and unit norms of the
    package's init hide nothing."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in peer.parameters():
            p.add_(scale * torch.randn_like(p))
    return peer


def _mlstm_peer(E, NH, bs, pf, rt, T, seed, **layer):
    from xlstm.blocks.mlstm.block import mLSTMBlock, mLSTMBlockConfig
    from xlstm.blocks.mlstm.layer import mLSTMLayerConfig

    cfg = mLSTMLayerConfig(
        embedding_dim=E, num_heads=NH, qkv_proj_blocksize=bs, proj_factor=pf,
        round_proj_up_to_multiple_of=rt, context_length=T, **layer,
    )  # fmt: skip
    return _randomize(mLSTMBlock(mLSTMBlockConfig(mlstm=cfg, _num_blocks=1, _block_idx=0)), seed)


def _slstm_peer(E, NH, K, pf, rt, seed, feedforward=True, **layer):
    from xlstm.blocks.slstm.block import sLSTMBlock, sLSTMBlockConfig
    from xlstm.blocks.slstm.layer import sLSTMLayerConfig
    from xlstm.components.feedforward import FeedForwardConfig

    cfg = sLSTMLayerConfig(
        embedding_dim=E, num_heads=NH, conv1d_kernel_size=K, backend="vanilla",
        dtype="float32", enable_automatic_mixed_precision=False, **layer,
    )  # fmt: skip
    ffn = FeedForwardConfig(proj_factor=pf, round_proj_up_to_multiple_of=rt, act_fn="gelu")
    block = sLSTMBlockConfig(
        slstm=cfg, feedforward=ffn if feedforward else None, _num_blocks=1, _block_idx=0
    )
    return _randomize(sLSTMBlock(block), seed)


def _numpy_sd(peer):
    return {k: v.detach().numpy().copy() for k, v in peer.state_dict().items()}


def _grads_to_xlstm(to_xlstm, block, grads):
    """The gradient w.r.t. the package's parameters: ``to_xlstm`` is affine and every number
    of one side appears once on the other, so the gradient maps like the weights without the
    constant (the ``-1`` of the residual norm weights): ``to(g) - to(0)``, in float64 so the
    subtraction is exact."""
    grads = jax.tree.map(lambda a: np.asarray(a, np.float64), grads)
    zero = to_xlstm(block, jax.tree.map(np.zeros_like, grads))
    return {k: v - zero[k] for k, v in to_xlstm(block, grads).items()}


def _close(ours, theirs, rel, elem, what, worst):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = float(np.max(np.abs(theirs)))
    worst[what] = float(np.max(np.abs(ours - theirs))) / max(scale, 1e-30)
    np.testing.assert_allclose(ours, theirs, rtol=elem, atol=rel * scale, err_msg=what)


def _check_parity(peer, block, params, to_xlstm, xs, w):
    """Outputs, input gradient and every parameter's gradient of ``sum(ys * w)``."""
    xt = torch.tensor(xs, requires_grad=True)
    want = peer(xt)
    (want * torch.tensor(w)).sum().backward()

    def loss(p, x):
        ys = block.apply(p, x)[1]
        return jnp.sum(ys * w), ys

    (_, ys), (g_p, g_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        params, jnp.asarray(xs)
    )
    worst = {}
    want = want.detach().numpy()
    assert np.abs(want - xs).mean() > 0.1  # the block adds a real update to its input
    _close(ys, want, 1e-5, 1e-5, "output", worst)
    _close(g_x, xt.grad.numpy(), 1e-4, 1e-4, "grad xs", worst)
    g_theirs = dict(peer.named_parameters())
    g_ours = _grads_to_xlstm(to_xlstm, block, g_p)
    assert sorted(g_ours) == sorted(g_theirs)
    for name, p in g_theirs.items():
        assert float(p.grad.abs().max()) > 0, name  # every parameter matters to the loss
        _close(g_ours[name], p.grad.numpy(), 1e-4, 1e-4, name, worst)
    return worst


@pytest.mark.parametrize(
    "config, form",
    [(MLSTM_CONFIGS[0], "chunkwise"), (MLSTM_CONFIGS[1], "chunkwise"),
     (MLSTM_CONFIGS[0], "recurrent")],
)  # fmt: skip
def test_mlstm_block_matches_xlstm_outputs_and_grads(config, form):
    E, NH, bs, pf, rt, T, B, chunk, seed = config
    peer = _mlstm_peer(E, NH, bs, pf, rt, T, seed)
    block = lj.mLSTMBlock(
        E, num_heads=NH, proj_factor=pf, round_to=rt, qkv_blocksize=bs, form=form,
        chunk_size=chunk,
    )  # fmt: skip
    assert block.inner_dim == peer.xlstm.config._inner_embedding_dim
    params = mlstm_block_from_xlstm(peer.state_dict(), block)
    rng = np.random.default_rng(seed + 10)
    xs, w = (rng.normal(size=(B, T, E)).astype(np.float32) for _ in range(2))
    worst = _check_parity(peer, block, params, mlstm_block_to_xlstm, xs, w)
    print(f"mLSTM {form} {config}: max |diff| / max |ref|:", worst)


@pytest.mark.parametrize("config", SLSTM_CONFIGS)
def test_slstm_block_matches_xlstm_outputs_and_grads(config):
    E, NH, K, pf, rt, T, B, seed = config
    peer = _slstm_peer(E, NH, K, pf, rt, seed)
    block = lj.sLSTMBlock(E, num_heads=NH, conv_kernel=K, ffn_factor=pf, round_to=rt)
    assert block.ffn_dim == peer.ffn.config._proj_up_dim
    params = slstm_block_from_xlstm(peer.state_dict(), block)
    rng = np.random.default_rng(seed + 10)
    xs, w = (rng.normal(size=(B, T, E)).astype(np.float32) for _ in range(2))
    worst = _check_parity(peer, block, params, slstm_block_to_xlstm, xs, w)
    print(f"sLSTM {config}: max |diff| / max |ref|:", worst)


def _assert_round_trip(back, sd, norm_keys):
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
        assert back[k].shape == v.shape and back[k].dtype == np.float32, k
        if k in norm_keys:  # stored as 1 + w on our side: (1 + w) - 1 rounds within an ulp of 1+w
            assert np.all(np.abs(back[k] - v) <= np.spacing(np.float32(1 + np.abs(v)))), k
        else:
            np.testing.assert_array_equal(back[k], v, err_msg=k)


def _reload(make_peer, back, xs):
    fresh = make_peer()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()})  # strict: all keys
    with torch.no_grad():
        return fresh(torch.from_numpy(xs)).numpy()


def test_mlstm_block_round_trips():
    E, NH, bs, pf, rt, T, B, _, seed = MLSTM_CONFIGS[1]
    peer = _mlstm_peer(E, NH, bs, pf, rt, T, seed)
    block = lj.mLSTMBlock(E, num_heads=NH, proj_factor=pf, round_to=rt, qkv_blocksize=bs)
    sd = _numpy_sd(peer)
    assert sorted(sd) == sorted(MLSTM_BLOCK_KEYS)
    params = mlstm_block_from_xlstm(sd, block)  # a dict of NumPy arrays, not tensors
    back = mlstm_block_to_xlstm(block, params)
    norms = {"xlstm_norm.weight", "xlstm.mlstm_cell.outnorm.weight"}
    _assert_round_trip(back, sd, norms)
    xs = np.random.default_rng(0).normal(size=(B, T, E)).astype(np.float32)
    with torch.no_grad():
        want = peer(torch.from_numpy(xs)).numpy()
    got = _reload(lambda: _mlstm_peer(E, NH, bs, pf, rt, T, seed + 1), back, xs)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    # the other way: ours, with noise on the entries the block never reads (off the q, k, v
    # maps, the o block, the q, k, v, o biases, the cell's i, f columns that w_gates replaces)
    # -> xlstm -> ours gives the params back with those entries zero
    w_mask, b_mask = block.cell_mask()
    w_x, b = np.asarray(params.cell.w_x) + 1 - w_mask, np.asarray(params.cell.b) + 1 - b_mask
    noisy = params._replace(cell=params.cell._replace(w_x=w_x, b=b))
    again = mlstm_block_from_xlstm(mlstm_block_to_xlstm(block, noisy), block)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=2.5e-7)  # norms: 1 + ((1 + w) - 1)
    I, NH = block.inner_dim, block.num_heads  # init's params have the same form
    shapes = jax.eval_shape(lambda key: block.init(key, E), jax.random.key(0))
    assert jax.tree.map(np.shape, shapes) == jax.tree.map(np.shape, params)
    assert shapes.w_gates.shape == (3 * I, 2 * NH)


def test_slstm_block_round_trips_and_reads_a_prefixed_stack():
    E, NH, K, pf, rt, T, B, seed = SLSTM_CONFIGS[0]
    peer = _slstm_peer(E, NH, K, pf, rt, seed)
    block = lj.sLSTMBlock(E, num_heads=NH, conv_kernel=K, ffn_factor=pf, round_to=rt)
    sd = _numpy_sd(peer)
    assert sorted(sd) == sorted(SLSTM_BLOCK_KEYS)
    prefix = "xlstm_block_stack.blocks.1."
    stacked = {prefix + k: v for k, v in sd.items()} | {"token_embedding.weight": np.ones((3, E))}
    params = slstm_block_from_xlstm(stacked, block, prefix=prefix)
    back = slstm_block_to_xlstm(block, params)
    _assert_round_trip(back, sd, {"xlstm_norm.weight", "xlstm.group_norm.weight",
                                  "ffn_norm.weight"})  # fmt: skip
    assert sorted(slstm_block_to_xlstm(block, params, prefix=prefix)) == sorted(set(stacked) - {
        "token_embedding.weight"})  # fmt: skip
    xs = np.random.default_rng(0).normal(size=(B, T, E)).astype(np.float32)
    with torch.no_grad():
        want = peer(torch.from_numpy(xs)).numpy()
    got = _reload(lambda: _slstm_peer(E, NH, K, pf, rt, seed + 1), back, xs)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    noise = 1 - block.cell_mask()  # i, f from x, z, o from c, off the per-head blocks
    noisy = params._replace(cell=params.cell._replace(w_x=np.asarray(params.cell.w_x) + noise))
    again = slstm_block_from_xlstm(slstm_block_to_xlstm(block, noisy), block)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=2.5e-7)  # norms: 1 + ((1 + w) - 1)


def test_wrong_gate_weights_are_refused():
    E, NH, bs, pf, rt, T, B, _, seed = MLSTM_CONFIGS[0]
    block = lj.mLSTMBlock(E, num_heads=NH, proj_factor=pf, round_to=rt, qkv_blocksize=bs)
    params = mlstm_block_from_xlstm(_numpy_sd(_mlstm_peer(E, NH, bs, pf, rt, T, seed)), block)
    bad = params._replace(w_gates=params.w_gates[:90])
    with pytest.raises(
        ValueError, match=r"`params.w_gates` must have shape \(96, 4\) .*got \(90, 4"
    ):
        block.apply(bad, jnp.zeros((B, T, E)))


def test_converters_refuse_bad_input():
    E, NH, bs, pf, rt, T, _, _, seed = MLSTM_CONFIGS[0]
    m_block = lj.mLSTMBlock(E, num_heads=NH, proj_factor=pf, round_to=rt, qkv_blocksize=bs)
    sd = _numpy_sd(_mlstm_peer(E, NH, bs, pf, rt, T, seed))
    s_block = lj.sLSTMBlock(16, num_heads=2, ffn_factor=1.3, round_to=16)
    s_sd = _numpy_sd(_slstm_peer(16, 2, 4, 1.3, 16, seed))

    with pytest.raises(TypeError, match=r"`mlstm_block_from_xlstm`: `block` must be a mLSTMB"):
        mlstm_block_from_xlstm(sd, s_block)
    with pytest.raises(TypeError, match=r"`state_dict` must be a mapping .* got list"):
        slstm_block_from_xlstm(list(s_sd.items()), s_block)
    with pytest.raises(ValueError, match=r"has no entry 'xlstm.learnable_skip'"):
        mlstm_block_from_xlstm({k: v for k, v in sd.items() if "skip" not in k}, m_block)
    wrong = lj.mLSTMBlock(E, num_heads=NH, proj_factor=pf, round_to=rt, qkv_blocksize=8)
    with pytest.raises(
        ValueError, match=r"`state_dict\['xlstm.q_proj.weight'\]` must have shape \(4, 8, 8\); "
        r"got \(8, 4, 4\)"
    ):  # fmt: skip
        mlstm_block_from_xlstm(sd, wrong)
    with pytest.raises(ValueError, match=r"'xlstm.conv1d.conv.weight'\]` must have shape \(16, 1, "
                       r"3\); got \(16, 1, 4\)"):  # fmt: skip
        slstm_block_from_xlstm(s_sd, lj.sLSTMBlock(16, 2, conv_kernel=3, ffn_factor=1.3,
                                                   round_to=16))  # fmt: skip
    with pytest.raises(ValueError, match=r"'xlstm.mlstm_cell.igate.weight'\]` must have shape "
                       r"\(4, 96\); got \(2, 96\)"):  # fmt: skip
        mlstm_block_from_xlstm(sd, lj.mLSTMBlock(E, num_heads=4, proj_factor=pf, round_to=rt))

    # options lstm_jax's blocks cannot hold, built by the package itself
    biased = _numpy_sd(_mlstm_peer(E, NH, bs, pf, rt, T, seed, bias=True))
    with pytest.raises(ValueError, match=r"has \['xlstm.k_proj.bias', .*no biases in their proj"):
        mlstm_block_from_xlstm(biased, m_block)
    with pytest.raises(ValueError, match=r"cannot hold: \['xlstm.extra'\]"):
        mlstm_block_from_xlstm(sd | {"xlstm.extra": np.zeros(3)}, m_block)
    no_ffn = _numpy_sd(_slstm_peer(16, 2, 4, 1.3, 16, seed, feedforward=False))
    with pytest.raises(ValueError, match=r"no entry 'ffn.proj_up.weight': .* feedforward=None"):
        slstm_block_from_xlstm(no_ffn, s_block)
    no_conv = _numpy_sd(_slstm_peer(16, 2, 0, 1.3, 16, seed))
    with pytest.raises(ValueError, match=r"conv1d_kernel_size=0"):
        slstm_block_from_xlstm(no_conv, s_block)
    no_gn = _numpy_sd(_slstm_peer(16, 2, 4, 1.3, 16, seed, group_norm_weight=False))
    with pytest.raises(ValueError, match=r"'xlstm.group_norm.weight': .*group_norm_weight=False"):
        slstm_block_from_xlstm(no_gn, s_block)

    # the lstm_jax side
    params = mlstm_block_from_xlstm(sd, m_block)
    with pytest.raises(TypeError, match=r"`mlstm_block_to_xlstm`: `params` must be a mLSTMBlockP"):
        mlstm_block_to_xlstm(m_block, slstm_block_from_xlstm(s_sd, s_block))
    with pytest.raises(
        ValueError, match=r"`params.w_down` must have shape \(32, 16\); got \(16, 32"
    ):
        mlstm_block_to_xlstm(m_block, params._replace(w_down=params.w_down.T))
    s_params = slstm_block_from_xlstm(s_sd, s_block)
    with pytest.raises(
        ValueError, match=r"`params.cell.r` must have shape \(2, 8, 32\); got \(2, 8, 8"
    ):
        slstm_block_to_xlstm(s_block, s_params._replace(cell=s_params.cell._replace(
            r=s_params.cell.r[..., :8])))  # fmt: skip
