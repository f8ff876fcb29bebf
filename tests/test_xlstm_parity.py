"""Parity with NX-AI's ``xlstm`` package (PyTorch; its CPU code: the vanilla sLSTM backend and
the parallel-stabilised mLSTM): weights converted both ways, outputs, final states and
gradients equal to float32 tolerance on random configurations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax.interop.xlstm_weights import (
    mlstm_from_xlstm,
    mlstm_to_xlstm,
    slstm_from_xlstm,
    slstm_to_xlstm,
)

torch = pytest.importorskip("torch")
pytest.importorskip("xlstm")

pytestmark = [pytest.mark.loose_promotion, pytest.mark.slow]  # torch: NumPy-promoted code


def _slstm_peer(H, NH, seed):
    from xlstm.blocks.slstm.cell import sLSTMCell_vanilla, sLSTMCellConfig

    torch.manual_seed(seed)
    cfg = sLSTMCellConfig(
        hidden_size=H,
        num_heads=NH,
        backend="vanilla",
        dtype="float32",
        recurrent_weight_init="standard",
        enable_automatic_mixed_precision=False,
    )
    peer = sLSTMCell_vanilla(cfg)
    with torch.no_grad():  # random recurrent kernel and bias, not the structured init
        for p in peer.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    return peer


@pytest.mark.parametrize("H, NH, B, T, seed", [(8, 2, 3, 7, 0), (12, 3, 2, 11, 1), (4, 1, 1, 5, 2)])
def test_slstm_matches_xlstm_outputs_states_and_grads(H, NH, B, T, seed):
    peer = _slstm_peer(H, NH, seed)
    cell, params = slstm_from_xlstm(peer.state_dict(), num_heads=NH)
    x = np.random.default_rng(seed).normal(size=(B, T, 4 * H)).astype(np.float32)
    w = np.random.default_rng(seed + 9).normal(size=(B, T, H)).astype(np.float32)

    xt = torch.tensor(x, requires_grad=True)
    out, state = peer(xt)  # out: (B, NH, T, D); state: (4, B, H) = y, c, n, m
    out = out.permute(0, 2, 1, 3).reshape(B, T, H)
    (out * torch.tensor(w)).sum().backward()

    def loss(params, xs):
        carry, ys = lj.scan(cell, params, xs)
        return jnp.sum(ys * w), (carry, ys)

    (_, (carry, ys)), (g_p, g_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        params, jnp.asarray(x)
    )
    np.testing.assert_allclose(ys, out.detach().numpy(), rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(
        (carry.h, carry.c, carry.n, carry.m), state.detach().numpy(), strict=True
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_x, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    g_r = np.transpose(peer._recurrent_kernel_.grad.numpy(), (0, 2, 1))
    np.testing.assert_allclose(g_p.r, g_r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_p.b, peer._bias_.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_slstm_converters_round_trip():
    peer = _slstm_peer(8, 2, 3)
    sd = {k: v.detach().numpy() for k, v in peer.state_dict().items()}
    cell, params = slstm_from_xlstm(sd, num_heads=2)
    back = slstm_to_xlstm(cell, params)
    assert sorted(back) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])
    peer2 = _slstm_peer(8, 2, 4)
    peer2.load_state_dict({k: torch.tensor(v) for k, v in back.items()})
    x = torch.randn(2, 5, 32)
    np.testing.assert_allclose(peer2(x)[0].detach().numpy(), peer(x)[0].detach().numpy())


def _mlstm_peer(H, NH, T, seed):
    from xlstm.blocks.mlstm.cell import mLSTMCell, mLSTMCellConfig

    torch.manual_seed(seed)
    peer = mLSTMCell(mLSTMCellConfig(context_length=T, embedding_dim=H, num_heads=NH))
    with torch.no_grad():
        for p in peer.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    return peer


@pytest.mark.parametrize("form", ["recurrent", "parallel", "chunkwise"])
@pytest.mark.parametrize("H, NH, B, T, seed", [(8, 2, 2, 9, 0), (12, 3, 3, 16, 1)])
def test_mlstm_matches_xlstm_in_every_form(form, H, NH, B, T, seed):
    peer = _mlstm_peer(H, NH, T, seed)
    cell, params = mlstm_from_xlstm(peer.state_dict(), num_heads=NH)
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(B, T, H)).astype(np.float32) for _ in range(3))
    w = rng.normal(size=(B, T, H)).astype(np.float32)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out = peer(tq, tk, tv)  # (B, T, H), the parallel-stabilised form
    (out * torch.tensor(w)).sum().backward()

    def run(params, xs):
        if form == "recurrent":
            return lj.scan(cell, params, xs)[1]
        return lj.parallel_scan(cell, params, xs, chunk_size=4 if form == "chunkwise" else T)[1]

    xs = jnp.asarray(np.concatenate([q, k, v], axis=-1))
    ys, vjp = jax.vjp(run, params, xs)
    g_p, g_x = vjp(jnp.asarray(w))
    np.testing.assert_allclose(ys, out.detach().numpy(), rtol=1e-5, atol=1e-5)
    g_theirs = np.concatenate([t.grad.numpy() for t in (tq, tk, tv)], axis=-1)
    np.testing.assert_allclose(g_x, g_theirs, rtol=1e-4, atol=1e-4)
    g_wi = g_p.w_x[:, 4 * H : 4 * H + NH].T
    np.testing.assert_allclose(g_wi, peer.igate.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        g_p.norm_scale, peer.outnorm.weight.grad.numpy(), rtol=1e-4, atol=1e-4
    )


def test_mlstm_matches_xlstm_step_states():
    H, NH, B, T = 8, 2, 2, 6
    peer = _mlstm_peer(H, NH, T, 5)
    cell, params = mlstm_from_xlstm(peer.state_dict(), num_heads=NH)
    rng = np.random.default_rng(5)
    q, k, v = (rng.normal(size=(B, T, H)).astype(np.float32) for _ in range(3))
    state = None
    for t in range(T):
        args = (torch.tensor(a[:, t : t + 1]) for a in (q, k, v))
        _, state = peer.step(*args, mlstm_state=state)
    carry, _ = lj.scan(cell, params, jnp.asarray(np.concatenate([q, k, v], -1)))
    c, n, m = (s.detach().numpy() for s in state)
    np.testing.assert_allclose(carry.c, c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(carry.n, n[..., 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(carry.m, m[..., 0, 0], rtol=1e-5, atol=1e-5)


def test_mlstm_converters_round_trip():
    peer = _mlstm_peer(8, 2, 5, 6)
    sd = {k: v.detach().numpy() for k, v in peer.state_dict().items()}
    cell, params = mlstm_from_xlstm(sd, num_heads=2)
    back = mlstm_to_xlstm(cell, params)
    assert sorted(back) == sorted(sd)
    for key in sd:
        np.testing.assert_allclose(back[key], sd[key], atol=1e-7)


def test_converters_refuse_what_xlstm_cannot_hold():
    cell = lj.sLSTMCell(8, num_heads=2)
    with pytest.raises(ValueError, match="slstm_to_xlstm.*identity"):
        slstm_to_xlstm(cell, cell.init(jax.random.key(0), 5))
    m = lj.mLSTMCell(8, num_heads=2)
    with pytest.raises(ValueError, match="mlstm_to_xlstm.*output_gate=False"):
        mlstm_to_xlstm(m, m.init(jax.random.key(0), 24))
    with pytest.raises(ValueError, match="slstm_from_xlstm.*_recurrent_kernel_"):
        slstm_from_xlstm({"_bias_": np.zeros(32)}, num_heads=2)
