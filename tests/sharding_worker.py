"""Runs multi-device training checks in a fresh process and prints one JSON line of results.

``test_sharding.py`` launches it with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
(the test process itself already holds one CPU device):

    python tests/sharding_worker.py single CKPT_DIR          # 8 devices, one process
    python tests/sharding_worker.py multi CKPT_DIR PID PORT  # 2 devices in each of 2 processes

The assertions live in the test; this script only measures.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

import lstm_jax as lj
from lstm_jax import sharding as sh

RNN, HEAD = lj.LSTM(64), lj.Dense(1)  # w_h: (64, 256) = 16384 elements, split over `model`
OPT = optax.adam(1e-2)


def loss_fn(params, batch):
    _, hs = RNN.apply(params[0], batch[0])  # (B, T, 64)
    return jnp.mean(jnp.square(HEAD.apply(params[1], hs[:, -1]) - batch[1]))


def make_params():
    return (RNN.init(jax.random.key(0), 3), HEAD.init(jax.random.key(1), 64))


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, 8, 3)).astype(np.float32)  # (n, T, I)
    return xs, np.tanh(xs.sum(axis=(1, 2)))[:, None].astype(np.float32)  # (n, 1)


def batches(steps=4, size=16):
    xs, ys = make_data(steps * size)
    return [(xs[i * size : (i + 1) * size], ys[i * size : (i + 1) * size]) for i in range(steps)]


def reference():
    """Losses and final state of plain single-device training: the oracle."""
    step = jax.jit(lj.make_train_step(loss_fn, OPT))
    state, losses = lj.init_train_state(make_params(), OPT), []
    for batch in batches():
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, state


def on_mesh(mesh, make_batch, loss=loss_fn):
    """Four sharded steps; also counts the collectives XLA put inside the time loops."""
    step = sh.shard_step(lj.make_train_step(loss, OPT), mesh)
    state, losses = sh.shard_state(lj.init_train_state(make_params(), OPT), mesh), []
    for i, batch in enumerate(batches()):
        batch = make_batch(batch)
        if i == 0:
            step = step.lower(state, batch).compile()
            loops = loop_collectives(step.as_text())
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, state, loops


COLLECTIVE = r"(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(?:-start)?\("


def loop_collectives(hlo: str) -> dict:
    """Collectives inside while-loop bodies (the forward and backward scans over time)."""
    bodies = set(re.findall(r"body=(%?[\w.\-]+)", hlo))
    comps = dict(re.findall(r"\n(%?[\w.\-]+) \([^\n]*\{(.*?)\n\}", hlo, re.S))
    found = [c for b in bodies for c in re.findall(COLLECTIVE, comps[b])]
    return {c: found.count(c) for c in sorted(set(found))}


def max_diff(a, b):
    gathered = jax.tree.map(lambda x: np.asarray(_gather(x)), (a, b))
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), *gathered)
    return max(jax.tree.leaves(diffs))


def norm(tree):
    return float(sum(np.sum(np.square(_gather(x))) for x in jax.tree.leaves(tree)))


def _gather(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(x, tiled=True)
    return x


def spec(x):
    return str(getattr(x.sharding, "spec", x.sharding))


def error(fn):
    try:
        fn()
    except ValueError as e:
        return str(e)
    return None


def shard_map_runs(mesh):
    """Each layer's gradient and forward-mode derivative inside ``jax.shard_map`` (type checks
    on), one shard of the batch per device, against the same call on the whole batch."""
    xs, _ = make_data(16)
    lengths = np.arange(16) % 9  # 0..8: empty, partial and full sequences
    layers = {
        "lstm": lj.LSTM(16),
        "gru": lj.GRU(16),
        "bidir_lengths": lj.LSTM(16, num_layers=2, bidirectional=True),
    }
    out = {}
    for name, layer in layers.items():
        params = layer.init(jax.random.key(0), 3)
        lens = lengths if name == "bidir_lengths" else None

        def loss(p, x, n, layer=layer):
            return jnp.sum(jnp.square(layer.apply(p, x, lengths=n)[1]))

        def both(p, x, n, loss=loss):
            g = jax.grad(loss, argnums=(0, 1))(p, x, n)
            return g, jax.jvp(lambda x: loss(p, x, n), (x,), (x,))[1]

        def local(p, x, n, both=both):
            g, t = both(p, x, n)
            return g, jax.lax.psum(t, sh.DATA)

        n_spec = P() if lens is None else P(sh.DATA)
        f = jax.jit(
            jax.shard_map(
                local,
                mesh=mesh,
                in_specs=(P(), P(sh.DATA), n_spec),
                out_specs=((P(), P(sh.DATA)), P()),
            )
        )
        try:
            got = f(params, xs, None if lens is None else jnp.asarray(lens))
        except Exception as e:  # noqa: BLE001 - the test asserts on the message
            out[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            continue
        want = both(params, xs, None if lens is None else jnp.asarray(lens))
        scale = max(float(np.max(np.abs(np.asarray(a)))) for a in jax.tree.leaves(want))
        out[name] = {"rel_diff": max_diff(got, want) / scale}
    return out


def single(ckpt):
    out = {"devices": jax.device_count()}
    out["ref_losses"], ref = reference()
    out["ref_param_norm"] = norm(ref.params)
    mesh8 = sh.make_mesh(8)
    runs = [("dp8", mesh8, loss_fn), ("dp8_local", mesh8, sh.data_parallel_loss(loss_fn, mesh8))]
    for name, mesh, loss in [*runs, ("dp4x2", sh.make_mesh(4, 2), loss_fn)]:
        losses, state, loops = on_mesh(mesh, lambda b, m=mesh: sh.shard_batch(b, m), loss)
        w_h = state.params[0][0].forward.w_h
        out[name] = {
            "losses": losses,
            "loop_collectives": loops,
            "param_diff": max_diff(state.params, ref.params),
            "w_h_spec": spec(w_h),
            "mu_spec": spec(state.opt_state[0].mu[0][0].forward.w_h),
            "w_h_devices": len(w_h.sharding.device_set),
            "w_h_shard": list(w_h.addressable_shards[0].data.shape),
        }
        last = (mesh, state)
    mesh, state = last  # the 4x2 run's state: w_h and its Adam moments split over `model`
    sh.save_sharded(ckpt, state)
    for name, target in [("2x4", sh.make_mesh(2, 4)), ("1x1", sh.make_mesh(1, 1))]:
        back = sh.restore_sharded(ckpt, state, target)
        out[f"restore_{name}"] = {
            "diff": max_diff(back, state),
            "w_h_spec": spec(back.params[0][0].forward.w_h),
            "w_h_shard": list(back.params[0][0].forward.w_h.addressable_shards[0].data.shape),
            "step": int(back.step),
        }
    xs, ys = make_data(12)
    out["indivisible"] = error(lambda: sh.shard_batch((xs, ys), sh.make_mesh(8)))
    gb, sb = sh.global_batch((xs[:8], ys[:8]), mesh), sh.shard_batch((xs[:8], ys[:8]), mesh)
    out["global_batch"] = {"diff": max_diff(gb, sb), "spec": spec(gb[0])}
    out["mesh_for"] = [dict(sh.mesh_for(*a).shape) for a in [("all",), (8, 2)]]
    out["shard_map"] = shard_map_runs(mesh8)
    out["fit"] = fit_runs()
    out["cli"] = cli_run(Path(ckpt).parent / "cli", "--devices", "all", "--model-parallel", "2")
    print(json.dumps(out))


def fit_run(mesh):
    """``fit`` with 62 training windows in batches of 16: on a 4x2 mesh the last batch (14)
    does not divide by data=4 and runs replicated."""
    r = lj.fit(loss_fn, make_params(), make_data(78, seed=1), epochs=2, batch_size=16,
               optimizer=OPT, config=lj.FitConfig(val_fraction=0.2, mesh=mesh))  # fmt: skip
    return {"loss": r.history["loss"], "val_loss": r.history["val_loss"]}


def fit_runs():
    mesh = sh.make_mesh(8)
    cfg = lj.FitConfig(mesh=mesh)
    bad = error(lambda: lj.fit(loss_fn, make_params(), make_data(24), batch_size=12, config=cfg))
    return {"dp4x2": fit_run(sh.make_mesh(4, 2)), "bad_batch": bad}


CLI = ["train", "--no-progress", "--no-plot", "--epochs", "1", "--hidden", "8", "--window", "24"]


def cli_run(out, *extra):
    """``lstm-jax train`` on tiny settings; returns its exit code and its loss history."""
    from lstm_jax.cli import main

    code = main([*CLI, "--out", str(out), *extra])
    history = json.loads((Path(out) / "metrics.json").read_text())["history"] if code == 0 else {}
    return {"code": code, "loss": history.get("loss"), "val_loss": history.get("val_loss")}


def multi(ckpt, pid, port):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    started = sh.initialize_distributed(f"127.0.0.1:{port}", 2, pid)
    out = {"started": started, "process": jax.process_index(), "devices": jax.device_count()}
    out["local_devices"] = jax.local_device_count()
    mesh = sh.make_mesh(2, 2)  # data axis across the two processes, model axis within each

    def local_rows(batch):  # this process's half of every global batch
        half = len(batch[0]) // 2
        return sh.global_batch(tuple(x[pid * half : (pid + 1) * half] for x in batch), mesh)

    out["losses"], state, _ = on_mesh(mesh, local_rows)
    out["param_norm"] = norm(state.params)  # the reference run's is in `single`'s output
    out["w_h_spec"] = spec(state.params[0][0].forward.w_h)
    sh.save_sharded(ckpt, state)
    back = sh.restore_sharded(ckpt, state, sh.make_mesh(4, 1))
    out["restore_diff"] = max_diff(back, state)
    out["restore_spec"] = spec(back.params[0][0].forward.w_h)
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "single":
        single(sys.argv[2])
    else:
        multi(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
