"""Data-parallel and sharded training: multi-device runs match one device, sharded checkpoints
restore onto other mesh shapes, a real two-process run on loopback, and every error message.

This process already holds one CPU device, so the multi-device checks run
``tests/sharding_worker.py`` in fresh processes with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` and assert on its JSON output.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sharding_worker as worker  # tests/ is on sys.path, as for `helpers`
from jax.sharding import AbstractMesh, AxisType

import lstm_jax as lj
from lstm_jax import sharding as sh

WORKER = Path(__file__).with_name("sharding_worker.py")
RTOL = 2e-5  # float32; reductions over 8 shards sum in a different order than over one


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(devices, *args):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    env["PYTHONPATH"] = os.pathsep.join([str(WORKER.parent.parent), env.get("PYTHONPATH", "")])
    env.pop("JAX_ENABLE_X64", None)
    cmd = [sys.executable, str(WORKER), *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def result(proc):
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Three processes at once: one with 8 CPU devices (step-level runs, checkpoints, `fit`,
    the command, errors) and two with 2 devices each that form one 4-device job over
    loopback. Meanwhile this process computes the one-device `fit` and command runs."""
    tmp, port = tmp_path_factory.mktemp("sharding"), free_port()
    procs = [start_worker(8, "single", tmp / "single")]
    procs += [start_worker(2, "multi", tmp / "multi", pid, port) for pid in (0, 1)]
    try:
        one = {"fit": worker.fit_run(None), "cli": worker.cli_run(tmp / "cli-one")}
    finally:
        outs = [result(p) for p in procs]
    outs[0]["one"] = one
    return outs


@pytest.fixture(scope="module")
def eight(workers):
    return workers[0]


@pytest.mark.slow
@pytest.mark.parametrize("mesh", ["dp8", "dp8_local", "dp4x2"])
def test_mesh_training_matches_one_device(eight, mesh):
    assert eight["devices"] == 8
    run = eight[mesh]
    np.testing.assert_allclose(run["losses"], eight["ref_losses"], rtol=RTOL)
    assert run["losses"][-1] < 0.6 * run["losses"][0]  # it trains
    assert run["param_diff"] < 1e-4  # Adam after 4 steps; parameters of size ~0.1
    assert run["w_h_devices"] == 8


@pytest.mark.slow
def test_gradient_all_reduce_stays_out_of_the_time_loop(eight):
    # The layers' default fast path forms the weight gradients as batched products after the
    # reverse recurrence, so neither partitioning the whole step nor per-shard differentiation
    # (data_parallel_loss) puts an all-reduce inside a loop over time. (Through autodiff step by
    # step, partitioning the whole step all-reduced inside the backward scan on XLA:CPU.)
    assert eight["dp8"]["loop_collectives"] == {}
    assert eight["dp8_local"]["loop_collectives"] == {}


@pytest.mark.slow
def test_model_axis_splits_large_params_and_their_adam_moments(eight):
    assert eight["dp8"]["w_h_spec"] == "P()" and eight["dp8"]["w_h_shard"] == [64, 256]
    run = eight["dp4x2"]
    assert run["w_h_spec"] == run["mu_spec"] == "P(None, 'model')"
    assert run["w_h_shard"] == [64, 128]  # (H, 4H) split in two over `model`


@pytest.mark.slow
def test_layers_run_inside_shard_map_with_type_checks_on_eight_devices(eight):
    # one shard of the batch per device, `check_vma` on: the zero initial carries are cast
    # to vary over `data` like the inputs, and the gradients (params summed over shards) and
    # forward-mode derivatives equal the whole-batch ones
    runs = eight["shard_map"]
    assert set(runs) == {"lstm", "gru", "bidir_lengths"}
    for name, run in runs.items():
        assert "error" not in run, (name, run)
        assert run["rel_diff"] < 1e-5, (name, run)


@pytest.mark.slow
def test_sharded_checkpoint_restores_onto_other_mesh_shapes(eight):
    on_2x4, on_1 = eight["restore_2x4"], eight["restore_1x1"]
    assert on_2x4["diff"] == 0.0 and on_1["diff"] == 0.0  # bit-identical values
    assert on_2x4["w_h_spec"] == "P(None, 'model')" and on_2x4["w_h_shard"] == [64, 64]
    assert on_1["w_h_spec"] == "P()" and on_1["w_h_shard"] == [64, 256]
    assert on_2x4["step"] == on_1["step"] == 4


@pytest.mark.slow
def test_indivisible_batch_is_refused_and_global_batch_agrees(eight):
    msg = eight["indivisible"]
    assert "`shard_batch`: `batch[0]` has 12 examples, not a multiple of 8" in msg
    assert "got batch[0].shape=(12, 8, 3)" in msg and "`batch[1]`" in msg
    assert eight["global_batch"] == {"diff": 0.0, "spec": "P('data',)"}
    assert eight["mesh_for"] == [{"data": 8, "model": 1}, {"data": 4, "model": 2}]


@pytest.mark.slow
def test_train_command_on_eight_devices_matches_one_device(eight):
    one, many = eight["one"]["cli"], eight["cli"]
    assert one["code"] == many["code"] == 0
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(many[key], one[key], rtol=RTOL)


def test_train_command_refuses_more_devices_than_exist(tmp_path, capsys):
    from lstm_jax.cli import main

    assert main([*worker.CLI, "--out", str(tmp_path), "--devices", "2"]) == 1
    assert capsys.readouterr().err == (
        "lstm-jax: error: `make_mesh`: a mesh of data=2 x model=1 needs 2 devices; only 1 "
        "available (cpu).\n"
    )
    assert main([*worker.CLI, "--devices", "0"]) == 2
    assert "--devices: expected a positive integer, got '0'" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_on_a_mesh_matches_fit_on_one_device(eight):
    fits = eight["fit"]
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(fits["dp4x2"][key], eight["one"]["fit"][key], rtol=RTOL)
    assert fits["bad_batch"] == (
        "`fit`: `batch_size`=12 is not a multiple of the 8 devices on the mesh's `data` axis; "
        "use e.g. batch_size=16."
    )


@pytest.mark.slow
def test_two_processes_on_loopback_train_like_one_device(workers):
    """A real multi-host start-up: two processes, 2 CPU devices each, coordinated through
    ``jax.distributed`` on 127.0.0.1; each feeds its own half of every batch."""
    outs = workers[1:]
    ref = workers[0]  # same model, data and steps on one device
    for pid, out in enumerate(outs):
        assert out["started"] and out["process"] == pid
        assert out["devices"] == 4 and out["local_devices"] == 2
        np.testing.assert_allclose(out["losses"], ref["ref_losses"], rtol=RTOL)
        np.testing.assert_allclose(out["param_norm"], ref["ref_param_norm"], rtol=RTOL)
        assert out["w_h_spec"] == "P(None, 'model')"
        assert out["restore_diff"] == 0.0 and out["restore_spec"] == "P()"


# ---- one device, in this process -------------------------------------------------------------


def test_make_mesh_on_one_device():
    mesh = sh.make_mesh()
    assert mesh.axis_names == ("data", "model") and dict(mesh.shape) == {"data": 1, "model": 1}
    assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": 0}, ValueError, r"`make_mesh`: `model` must be a positive int; got 0"),
        ({"data": "2"}, TypeError, r"`make_mesh`: `data` must be a positive int; got str"),
        ({"data": 2}, ValueError, r"data=2 x model=1 needs 2 devices; only 1 available \(cpu\)"),
        ({"model": 3}, ValueError, r"`model`=3 does not divide the 1 devices; pass `data`"),
    ],
)
def test_make_mesh_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        sh.make_mesh(**kwargs)


def test_mesh_for_one_device_is_none_and_errors():
    assert sh.mesh_for() is None and sh.mesh_for(1) is None and sh.mesh_for("all") is None
    with pytest.raises(ValueError, match=r"`mesh_for`: `devices` must be a positive int or 'all'"):
        sh.mesh_for(0)
    with pytest.raises(ValueError, match=r"`mesh_for`: `model`=2 must be a positive int that di"):
        sh.mesh_for(1, 2)
    with pytest.raises(ValueError, match=r"`make_mesh`: a mesh of data=2 x model=1 needs 2 dev"):
        sh.mesh_for(2)


def test_state_shardings_rule_on_an_abstract_mesh():
    mesh = AbstractMesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    params = (lj.LSTM(64).init(jax.random.key(0), 3), lj.Dense(1).init(jax.random.key(1), 64))
    specs = jax.tree.map(lambda s: tuple(s.spec), sh.state_shardings(params, mesh))
    lstm, dense = specs[0][0].forward, specs[1]
    assert lstm.w_h == (None, "model")  # (64, 256): 16384 elements >= MIN_SIZE
    assert lstm.w_x == lstm.b == () and dense.w == dense.b == ()  # small: replicated
    small = jax.tree.map(lambda s: tuple(s.spec), sh.state_shardings(params, mesh, min_size=1))
    assert small[0][0].forward.w_x == (None, "model") and small[1].w == ()  # (64, 1): 1 % 4


def test_shard_batch_errors():
    mesh = sh.make_mesh()
    with pytest.raises(ValueError, match=r"`shard_batch`: `batch\['n'\]` is a scalar; every"):
        sh.shard_batch({"n": np.float32(1.0), "x": np.zeros((2, 3))}, mesh)
    with pytest.raises(ValueError, match=r"the batch leaves disagree on the number of examples"):
        sh.shard_batch((np.zeros((2, 3)), np.zeros((3, 1))), mesh)
    with pytest.raises(ValueError, match=r"`global_batch`: `batch` has no arrays"):
        sh.global_batch((), mesh)


def test_one_device_mesh_changes_nothing_in_fit():
    head = lj.Dense(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    data = (x, x @ np.array([[1.0], [-2.0], [0.5]], np.float32))

    def loss_fn(params, batch):
        return jnp.mean(jnp.square(head.apply(params, batch[0]) - batch[1]))

    params = head.init(jax.random.key(0), 3)
    runs = [
        lj.fit(
            loss_fn,
            params,
            data,
            epochs=2,
            batch_size=16,
            optimizer=optax.adam(0.05),
            config=lj.FitConfig(val_fraction=0.25, mesh=mesh),
        )  # fmt: skip
        for mesh in (None, sh.make_mesh())
    ]
    assert runs[0].history["loss"] == runs[1].history["loss"]
    assert runs[0].history["val_loss"] == runs[1].history["val_loss"]
    np.testing.assert_array_equal(runs[0].params.w, runs[1].params.w)


def test_save_and_restore_on_one_device(tmp_path):
    state = lj.init_train_state(lj.LSTM(4).init(jax.random.key(0), 2), optax.adam(1e-3))
    path = sh.save_sharded(tmp_path / "ckpt", state)
    assert path.is_absolute() and path.is_dir()
    back = sh.restore_sharded(tmp_path / "ckpt", state, sh.make_mesh())
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
    sh.save_sharded(tmp_path / "ckpt", state._replace(step=state.step + 7))  # replaces
    assert int(sh.restore_sharded(tmp_path / "ckpt", state, sh.make_mesh()).step) == 7


def test_restore_sharded_errors(tmp_path):
    with pytest.raises(ValueError, match=r"`restore_sharded`: pass exactly one of `mesh` and"):
        sh.restore_sharded(tmp_path, {"a": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"`restore_sharded`: no checkpoint directory at .*nope"):
        sh.restore_sharded(tmp_path / "nope", {"a": jnp.zeros(2)}, sh.make_mesh())


def test_initialize_distributed_single_process_is_a_no_op():
    assert sh.initialize_distributed(num_processes=1) is False
    assert sh.initialize_distributed("localhost:1234", 1, 0) is False
    assert not jax.distributed.is_initialized()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("localhost", 2, 0), r"`coordinator_address` must be 'host:port'.*got 'localhost'"),
        (("h:99999", 2, 0), r"must be 'host:port'"),
        (("h:1234", 0, 0), r"`num_processes` must be a positive int; got 0"),
        (("h:1234", 2, 2), r"`process_id` must be an int in \[0, num_processes=2\); got 2"),
        (("h:1234", None, None), r"pass all of `coordinator_address`, `num_processes` and"),
        ((None, 4, 1), r"or none of them \(to let JAX detect the cluster"),
    ],
)
def test_initialize_distributed_errors(args, match):
    with pytest.raises(ValueError, match=r"`initialize_distributed`: .*" + match):
        sh.initialize_distributed(*args)
    assert not jax.distributed.is_initialized()
