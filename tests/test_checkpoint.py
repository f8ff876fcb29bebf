"""Checkpoints and params files: exact round trips, atomic writes, clear refusals."""

import os

import jax
import numpy as np
import optax
import pytest

import lstm_jax as lj
from lstm_jax import checkpoint as ck

RNN = lj.LSTM(5, num_layers=2, bidirectional=True, proj_size=3)


def params(seed=0, input_size=4):
    return RNN.init(jax.random.key(seed), input_size)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("layer", [RNN, lj.GRU(4), lj.Dense(2)])
def test_params_round_trip_is_exact(tmp_path, layer):
    p = layer.init(jax.random.key(0), 3)
    lj.save_params(tmp_path / "p.msgpack", p)
    back = lj.load_params(tmp_path / "p.msgpack", like=layer.init(jax.random.key(1), 3))
    assert_trees_equal(back, p)


def test_checkpoint_round_trip_with_config_and_meta(tmp_path):
    opt = optax.adam(1e-3)
    state = lj.init_train_state(params(), opt)
    ck.save_checkpoint(tmp_path / "c", state, config={"hidden": 5}, meta={"epoch": 2})
    got = ck.load_checkpoint(tmp_path / "c", like=lj.init_train_state(params(1), opt))
    assert_trees_equal(got.tree, state)
    assert got.config == {"hidden": 5} and got.meta == {"epoch": 2}
    assert ck.read_checkpoint_info(tmp_path / "c") == ({"hidden": 5}, {"epoch": 2})


def test_shape_mismatch_names_the_leaf(tmp_path):
    lj.save_params(tmp_path / "p", params(input_size=4))
    with pytest.raises(ck.CheckpointError, match=r"does not match the expected model: .*w_x.* "
                       r"saved float32\[4, 20\], expected float32\[7, 20\]"):  # fmt: skip
        lj.load_params(tmp_path / "p", like=params(input_size=7))


def test_structure_mismatch_is_refused(tmp_path):
    lj.save_params(tmp_path / "p", params())
    with pytest.raises(ValueError, match=r"structure differs from the template"):
        lj.load_params(tmp_path / "p", like=lj.LSTM(5).init(jax.random.key(0), 4))


def test_corrupted_and_truncated_files_are_refused(tmp_path):
    path = tmp_path / "p"
    lj.save_params(path, params())
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError, match=r"is corrupted \(checksum mismatch"):
        lj.load_params(path, like=params())
    path.write_bytes(bytes(data[:50]))
    with pytest.raises(ck.CheckpointError, match=r"is corrupted"):
        lj.load_params(path, like=params())


def test_foreign_missing_and_wrong_kind_files(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ck.CheckpointError, match=r"is not an lstm_jax params file"):
        lj.load_params(tmp_path / "x.txt", like=params())
    with pytest.raises(ck.CheckpointError, match=r"params file not found: .*nope"):
        lj.load_params(tmp_path / "nope", like=params())
    ck.save_checkpoint(tmp_path / "c", params())
    with pytest.raises(ck.CheckpointError, match=r"holds a 'checkpoint' file, not a 'params'"):
        lj.load_params(tmp_path / "c", like=params())


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "p"
    lj.save_params(path, params(0))
    before = path.read_bytes()

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        lj.save_params(path, params(1))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temporary file left
    monkeypatch.undo()
    assert_trees_equal(lj.load_params(path, like=params()), params(0))


def test_config_must_be_json(tmp_path):
    with pytest.raises(TypeError, match=r"`config` and `meta` must be JSON-serialisable"):
        ck.save_checkpoint(tmp_path / "c", params(), config={"f": object()})


def test_every_dtype_round_trips_exactly(tmp_path):
    import jax.numpy as jnp

    tree = {
        "f64": np.array([1.0 + 2.0**-40, -3.5]),
        "i64": np.array([2**40, -(2**40)], np.int64),
        "u8": np.array([255], np.uint8),
        "bool": np.array([True, False]),
        "bf16": jnp.array([1.5, -2.25], jnp.bfloat16),
        "f16": np.array([0.099975586], np.float16),
        "c64": np.array([1 + 2j], np.complex64),
        "np_scalar": np.float64(0.1),
        "py_int": 2**40,
        "py_float": 0.1,
    }
    ck.save_checkpoint(tmp_path / "c", tree)
    back = ck.load_checkpoint(tmp_path / "c", like=tree).tree
    for k, v in tree.items():
        assert type(back[k]) is type(v), k
        assert np.asarray(back[k]).dtype == np.asarray(v).dtype, k
        np.testing.assert_array_equal(np.asarray(back[k]), np.asarray(v))
    assert back["py_int"] == 2**40 and back["i64"][0] == 2**40


@pytest.mark.parametrize(
    ("leaf", "match"),
    [
        (np.array("abc"), r"leaf `tree\['x'\]` must be an array or number of a numeric or bool"),
        (np.array([object()]), r"with dtype object"),
        (jax.random.key(0), r"leaf `tree\['x'\]` is a PRNG key array; store `jax.random.key_data"),
    ],
)
def test_unstorable_leaves_are_refused_at_save_time(tmp_path, leaf, match):
    with pytest.raises(TypeError, match=match):
        ck.save_checkpoint(tmp_path / "c", {"x": leaf})
    assert not (tmp_path / "c").exists()


def write_payload(path, content):
    import hashlib

    from flax.serialization import msgpack_serialize

    payload = msgpack_serialize(content)
    path.write_bytes(ck.MAGIC + hashlib.sha256(payload).digest() + payload)


GOOD = {"version": 1, "kind": "params", "keys": ["[0]"], "leaves": {"0": np.zeros(2)},
        "config": "{}", "meta": "{}"}  # fmt: skip


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ([1, 2, 3], r"the payload is a list, not a map"),
        (
            {"kind": "params"},
            r"the payload lacks \['version', 'keys', 'leaves', 'config', 'meta'\]",
        ),
        ({**GOOD, "leaves": {"0": 5}}, r"leaves \['0'\] are not arrays"),
        ({**GOOD, "keys": "[0]"}, r"wrong type: keys \(str\)"),
        ({**GOOD, "leaves": {}}, r"its 1 leaf paths and 0 leaves do not match"),
        ({**GOOD, "version": 7}, r"format version 7"),
        ({**GOOD, "kind": "checkpoint", "config": "[1]"}, r"its config is not a JSON object"),
    ],
)
def test_crafted_payloads_with_a_valid_checksum_are_refused(tmp_path, content, match):
    write_payload(tmp_path / "p", content)
    with pytest.raises(ck.CheckpointError, match=r"is corrupted \(.*" + match):
        if isinstance(content, dict) and content.get("kind") == "checkpoint":
            ck.read_checkpoint_info(tmp_path / "p")
        else:
            lj.load_params(tmp_path / "p", like=[np.zeros(2)])


def test_a_crafted_payload_of_the_right_structure_loads(tmp_path):
    write_payload(tmp_path / "p", GOOD)  # the check above refuses only what is wrong
    np.testing.assert_array_equal(lj.load_params(tmp_path / "p", like=[np.ones(2)])[0], [0, 0])


@pytest.mark.parametrize("fn", [lj.load_params, ck.load_checkpoint])
def test_path_must_be_a_path(fn):
    with pytest.raises(TypeError, match=r"`path` must be a file path \(str or os.PathLike\); got"):
        fn(None, like=params())


def test_the_next_save_removes_a_killed_saves_temporary_file(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".p.tmp-{dead.pid}"
    stale.write_bytes(b"x" * 1000)  # what a SIGKILL during a save leaves
    live = tmp_path / f".p.tmp-{os.getppid()}"  # a save still running in a live process
    live.write_bytes(b"y")
    other = tmp_path / f".q.tmp-{dead.pid}"  # another file's: not this save's business
    other.write_bytes(b"z")
    lj.save_params(tmp_path / "p", params())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["p", live.name, other.name])
