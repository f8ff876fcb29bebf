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
