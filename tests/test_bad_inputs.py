"""Bad and edge-case inputs at every public entry point: each gets a clear error or a right answer.

One table per area of the package; a row is ``case(entry, call, exception, message pattern)``,
where ``entry`` is the public name the call exercises and ``call`` a function of no argument
(or of ``tmp_path`` for the rows that write files). To cover a new area, add a list of rows and
one ``@pytest.mark.parametrize``-d test that runs it, and add the area's modules to ``AREAS``:
``test_every_public_entry_point_has_bad_input_cases`` then fails for any public function or
class of those modules that no row exercises.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstm_jax as lj
from lstm_jax import checkpoint as ck
from lstm_jax import data as ld
from lstm_jax.cli import main


class Case(NamedTuple):
    entry: str  # the public name exercised
    call: Any  # () -> Any, or (tmp_path) -> Any
    exc: type[BaseException]
    match: str


def case(entry, call, exc, match):
    return Case(entry, call, exc, match)


def ids(rows):
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        seen[r.entry] = seen.get(r.entry, 0) + 1
        out.append(f"{r.entry}-{seen[r.entry]}")
    return out


def run_case(row: Case, tmp_path=None):
    args = (tmp_path,) if tmp_path is not None else ()
    with pytest.raises(row.exc, match=row.match):
        row.call(*args)


# ---------------------------------------------------------------------------------------------
# Training: fit, its config groups and callbacks, the steps, TBPTT, ensembles
# ---------------------------------------------------------------------------------------------

W = jnp.zeros((3, 1), jnp.float32)
X, Y = np.ones((8, 3), np.float32), np.ones((8, 1), np.float32)
KEY = jax.random.key(0)


def mse(w, batch):
    x, y = batch
    return jnp.mean(jnp.square(x @ w - y))


def fit(loss_fn=mse, params=W, data=(X, Y), **kw):
    kw.setdefault("epochs", 1)
    kw.setdefault("batch_size", 4)
    return lj.fit(loss_fn, params, data, **kw)


def tbptt_loss(w, carry, chunk):
    return jnp.mean(jnp.square(chunk @ w)), carry


STREAM = np.ones((2, 12, 3), np.float32)  # (B, N, features)
EMPTY = (np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32))

TRAINING = [
    case("fit", lambda: fit(key=42), TypeError, r"`fit`: `key` must be a PRNG key\. Make one"),
    case("fit", lambda: fit(key="abc"), TypeError, r"`fit`: `key` must be a PRNG key"),
    case("fit", lambda: fit(key=jax.random.split(KEY)), ValueError, r"single PRNG key"),
    case(
        "fit",
        lambda: fit(epochs=0),
        ValueError,
        r"`fit`: `epochs` must be (an int >= 1|a positive int); got 0",
    ),
    case(
        "fit",
        lambda: fit(batch_size=2.5),
        TypeError,
        r"`fit`: `batch_size` must be (an|a positive) int",
    ),
    case(
        "fit",
        lambda: fit(batch_size=True),
        TypeError,
        r"`batch_size` must be (an|a positive) int; got True",
    ),
    case("fit", lambda: fit(data=EMPTY), ValueError, r"`fit`: `train_data` holds no examples"),
    case("fit", lambda: fit(val_data=EMPTY), ValueError, r"`fit`: `val_data` holds no examples"),
    case("fit", lambda: fit(data=()), ValueError, r"`train_data` must hold at least one array"),
    case(
        "fit",
        lambda: fit(data=(np.zeros((4, 3), np.float32), np.zeros((5, 1), np.float32))),
        ValueError,
        r"share the leading \(examples\) axis",
    ),
    case(
        "fit",
        lambda: fit(loss_fn=lambda w, b: jnp.sum(w).astype(jnp.int32)),
        TypeError,
        r"`make_train_step`: `loss_fn` must return a real floating loss .* got dtype=int32",
    ),
    case(
        "fit",
        lambda: fit(loss_fn=lambda w, b: mse(w, b).astype(jnp.complex64)),
        TypeError,
        r"real floating loss .* got dtype=complex64\. Take `jnp.abs` or `.real`",
    ),
    case("fit", lambda: fit(loss_fn=lambda w, b: 1.0), TypeError, r"must return a scalar JAX"),
    case(
        "fit",
        lambda: fit(params={"w": W, "n": jnp.int32(3)}, loss_fn=lambda p, b: mse(p["w"], b)),
        TypeError,
        r"`fit`: every leaf of `params` must be a floating array .* params\['n'\] \(dtype=int32\)",
    ),
    case("fit", lambda: fit(optimizer="adam"), TypeError, r"`fit`: `optimizer` must be an optax"),
    case("fit", lambda: fit(config={"seed": 1}), TypeError, r"`config` must be an `lstm_jax.Fit"),
    case("fit", lambda: fit(checkpoint=3), TypeError, r"`fit`: `checkpoint` must be an `lstm_j"),
    case(
        "fit",
        lambda: fit(val_data=(X, Y), config=lj.FitConfig(val_fraction=0.5)),
        ValueError,
        r"pass either `val_data` or `FitConfig\(val_fraction=\.\.\.\)`, not both",
    ),
    case("fit", lambda: fit(callbacks=[print]), TypeError, r"entry of `callbacks` must be an `l"),
    case("fit", lambda: fit(callbacks=print), TypeError, r"`callbacks` must be a list of `lstm"),
    case(
        "fit",
        lambda: fit(loss_fn=lambda w, b: mse(w, b) * jnp.nan),
        FloatingPointError,
        r"`fit`: the training loss is not finite \(NaN or inf\) at step 1; training stopped",
    ),
    case(
        "fit",
        lambda: fit(val_data=(X * np.nan, Y)),
        FloatingPointError,
        r"`fit`: the validation loss is nan after epoch 1 \(step 2\)",
    ),
    case("FitConfig", lambda: lj.FitConfig(clip_norm="1"), TypeError, r"`clip_norm` must be a r"),
    case("FitConfig", lambda: lj.FitConfig(clip_norm=-1.0), ValueError, r"in \(0, inf\); got -1"),
    case("FitConfig", lambda: lj.FitConfig(clip_norm=0.0), ValueError, r"`clip_norm` must be a f"),
    case("FitConfig", lambda: lj.FitConfig(clip_norm=np.nan), ValueError, r"got nan"),
    case(
        "FitConfig",
        lambda: lj.FitConfig(max_steps=True),
        TypeError,
        r"`max_steps` must be (an|a positive) int; got True",
    ),
    case(
        "FitConfig",
        lambda: lj.FitConfig(max_steps=0),
        ValueError,
        r"`max_steps` must be (an int >= 1|a positive int); got 0",
    ),
    case("FitConfig", lambda: lj.FitConfig(val_fraction=1.5), ValueError, r"in \(0, 1\); got 1.5"),
    case("FitConfig", lambda: lj.FitConfig(shuffle="no"), TypeError, r"`shuffle` must be True o"),
    case("FitConfig", lambda: lj.FitConfig(seed=-1), ValueError, r"`seed` must be an int >= 0"),
    case("FitConfig", lambda: lj.FitConfig(mesh="cpu"), TypeError, r"`mesh` must be a jax.shar"),
    case("Checkpointing", lambda: lj.Checkpointing(None), TypeError, r"`path` must be a file p"),
    case(
        "Checkpointing",
        lambda: lj.Checkpointing("c", resume="yes"),
        TypeError,
        r"`Checkpointing`: `resume` must be True or False; got 'yes'",
    ),
    case("Checkpointing", lambda: lj.Checkpointing("c", save_every=0), ValueError, r"save_every"),
    case("Checkpointing", lambda: lj.Checkpointing("c", config=[1]), TypeError, r"`config` must"),
    case(
        "EarlyStopping",
        lambda: lj.EarlyStopping(0),
        ValueError,
        r"`EarlyStopping`: `patience` must be (an int >= 1|a positive int); got 0",
    ),
    case("EarlyStopping", lambda: lj.EarlyStopping(2, min_delta=-1), ValueError, r"min_delta"),
    case("EarlyStopping", lambda: lj.EarlyStopping(2, monitor=1), TypeError, r"`monitor` must"),
    case(
        "EarlyStopping",
        lambda: fit(callbacks=[lj.EarlyStopping(2)]),
        ValueError,
        r"`EarlyStopping`: monitoring `val_loss` needs validation data",
    ),
    case("TensorBoard", lambda: lj.TensorBoard(None), TypeError, r"`logdir` must be a directory"),
    case(
        "TensorBoard",
        lambda: lj.TensorBoard("d", every=0),
        ValueError,
        r"`TensorBoard`: `every` must be (an int >= 1|a positive int); got 0",
    ),
    case(
        "make_train_step",
        lambda: lj.make_train_step(mse, optax.sgd(0.1), key=42),
        TypeError,
        r"`make_train_step`: `key` must be a PRNG key",
    ),  # fmt: skip
    case("make_train_step", lambda: lj.make_train_step(mse, optax.adam), TypeError, r"optax"),
    case(
        "make_eval_step",
        lambda: lj.make_eval_step(lambda w, b: jnp.square(b[0] @ w))(W, (X, Y)),
        ValueError,
        r"`make_eval_step`: `loss_fn` must return a scalar loss \(shape \(\)\); got \(8, 1\)",
    ),
    case("init_train_state", lambda: lj.init_train_state(W, "adam"), TypeError, r"`optimizer`"),
    # a loss_fn that cannot take the call it gets is refused when the step is built
    case("fit", lambda: fit(loss_fn=None), TypeError, r"`fit`: `loss_fn` must be callable"),
    case(
        "fit",
        lambda: fit(loss_fn=lambda w, x, y: mse(w, (x, y))),
        TypeError,
        r"`fit`: `loss_fn` is called as `loss_fn\(params, batch\)`, which `<lambda>\(w, x, y\)` "
        r"does not accept .*`x, y = batch`",
    ),
    case(
        "fit",  # validation calls it without the key, so the key needs a default
        lambda: fit(loss_fn=lambda w, b, key: mse(w, b), key=KEY, val_data=(X, Y)),
        TypeError,
        r"`fit`: `loss_fn` is called as `loss_fn\(params, batch\)`.*key=None\)",
    ),
    case(
        "make_train_step",
        lambda: lj.make_train_step(mse, optax.sgd(0.1), key=KEY),
        TypeError,
        r"`make_train_step`: `loss_fn` is called as `loss_fn\(params, batch, key\)`, which "
        r"`mse\(w, batch\)` does not accept",
    ),
    case("make_train_step", lambda: lj.make_train_step(3, optax.sgd(0.1)), TypeError, r"callable"),
    case(
        "make_eval_step",
        lambda: lj.make_eval_step(lambda w, b, key: mse(w, b)),
        TypeError,
        r"`make_eval_step`: `loss_fn` is called as `loss_fn\(params, batch\)`.*key=None\)",
    ),
    case(
        "make_tbptt_step",
        lambda: lj.make_tbptt_step(lambda w, chunk: 0.0, optax.sgd(0.1)),
        TypeError,
        r"`make_tbptt_step`: `loss_fn` is called as `loss_fn\(params, carry, chunk\)`",
    ),
    case(
        "stream_chunks",
        lambda: lj.stream_chunks(STREAM, 0),
        ValueError,
        r"`chunk_length` must be (an int >= 1|a positive int); got 0",
    ),
    case(
        "stream_chunks",
        lambda: lj.stream_chunks(STREAM, -1),
        ValueError,
        r"`chunk_length` must be (an int >= 1|a positive int); got -1",
    ),
    case("stream_chunks", lambda: lj.stream_chunks(STREAM, 2.5), TypeError, r"`chunk_length`"),
    case(
        "stream_chunks",
        lambda: lj.stream_chunks(np.ones(12, np.float32), 4),
        ValueError,
        r"`stream_chunks`: `stream` must be a pytree of arrays shaped \(B, N, \.\.\.\) .*\(12,\)",
    ),
    case("stream_chunks", lambda: lj.stream_chunks(np.ones((2, 0, 3)), 4), ValueError, r"empty"),
    case(
        "stream_chunks",
        lambda: lj.stream_chunks(STREAM, 4, starts=np.zeros((2, 5), bool)),
        ValueError,
        r"`starts` must be a \(2, 12\) bool array .* Got shape \(2, 5\)",
    ),
    case(
        "fit_tbptt",
        lambda: lj.fit_tbptt(tbptt_loss, W, STREAM, (), chunk_length=0),
        ValueError,
        r"`stream_chunks`: `chunk_length` must be (an int >= 1|a positive int); got 0",
    ),
    case(
        "fit_tbptt",
        lambda: lj.fit_tbptt(tbptt_loss, W, STREAM[0, :, 0], (), chunk_length=4),
        ValueError,
        r"shaped \(B, N, \.\.\.\)",
    ),
    case(
        "fit_tbptt",
        lambda: lj.fit_tbptt(tbptt_loss, W, STREAM, (), chunk_length=4, clip_norm="1"),
        TypeError,
        r"`clip_norm` must be",
    ),  # fmt: skip
    case(
        "fit_tbptt",
        lambda: lj.fit_tbptt(tbptt_loss, W, STREAM, (), chunk_length=4, epochs=0),
        ValueError,
        r"`fit_tbptt`: `epochs` must be (an int >= 1|a positive int); got 0",
    ),  # fmt: skip
    case(
        "fit_tbptt",
        lambda: lj.fit_tbptt(
            lambda w, c, x: (tbptt_loss(w, c, x)[0] * jnp.inf, c), W, STREAM, (), chunk_length=4
        ),  # fmt: skip
        FloatingPointError,
        r"`fit_tbptt`: the training loss is not finite \(NaN or inf\) at step 1",
    ),
    case(
        "make_tbptt_step",
        lambda: lj.make_tbptt_step(lambda w, c, x: mse(w, (x, x)), optax.sgd(0.1))(
            lj.init_train_state(W, optax.sgd(0.1)), (), STREAM[:, :4], np.ones(2, bool)
        ),
        TypeError,
        r"must return `\(loss, carry\)`",
    ),
    case("make_tbptt_step", lambda: lj.make_tbptt_step(tbptt_loss, "sgd"), TypeError, r"optax"),
    case(
        "make_tbptt_step",
        lambda: lj.make_tbptt_step(tbptt_loss, optax.sgd(0.1), key=7),
        TypeError,
        r"`make_tbptt_step`: `key` must be a PRNG key",
    ),  # fmt: skip
    case(
        "fit_tbptt",
        lambda: lj.fit_tbptt(tbptt_loss, W, STREAM, (), chunk_length=4, key=None, epochs=1.0),
        TypeError,
        r"`fit_tbptt`: `epochs`",
    ),  # fmt: skip
    case(
        "fit_tbptt",
        lambda: lj.fit_tbptt(tbptt_loss, W, STREAM, (), chunk_length=4, key="k"),
        TypeError,
        r"`make_tbptt_step`: `key`",
    ),  # fmt: skip
    case("reset_carry", lambda: lj.reset_carry((), "x"), TypeError, r"`reset_carry`: `reset`"),
    case(
        "reset_carry",
        lambda: lj.reset_carry(jnp.zeros((3, 4)), np.ones(2, bool)),
        ValueError,
        r"`reset` must be a \(B,\) bool array with B = 3 \(the carry's leading axis\); got shape",
    ),
    case(
        "train_ensemble",
        lambda: lj.train_ensemble(mse, optax.sgd(0.1), None, None, 0, KEY),
        TypeError,
        r"`num_steps` must be a positive int; got 0",
    ),
    case(
        "init_ensemble",
        lambda: lj.init_ensemble(lambda k: W, optax.sgd(0.1), 3),
        ValueError,
        r"`keys` must be a 1-D array of PRNG keys",
    ),  # fmt: skip
    case(
        "make_ensemble_step",
        lambda: lj.make_ensemble_step(mse, "sgd"),
        TypeError,
        r"`make_train_step`: `optimizer` must be an optax",
    ),
]


@pytest.mark.parametrize("row", TRAINING, ids=ids(TRAINING))
def test_training(row):
    run_case(row)


# ---------------------------------------------------------------------------------------------
# Checkpoints and params files
# ---------------------------------------------------------------------------------------------

CHECKPOINTS = [
    case("load_params", lambda t: lj.load_params(None, like=W), TypeError, r"`load_params`: `pa"),
    case("save_params", lambda t: lj.save_params(None, W), TypeError, r"`save_params`: `path`"),
    case("load_params", lambda t: lj.load_params(t / "no", like=W), ck.CheckpointError, r"not f"),
    case(
        "save_params",
        lambda t: lj.save_params(t / "p", {"name": np.array("lstm")}),
        TypeError,
        r"leaf `tree\['name'\]` must be an array or number of a numeric or bool dtype",
    ),
    case("save_params", lambda t: lj.save_params(t / "p", W, config=[1]), TypeError, r"a dict"),
    case(
        "save_checkpoint",
        lambda t: ck.save_checkpoint(t / "c", W, meta={"f": object()}),
        TypeError,
        r"`save_checkpoint`: `config` and `meta` must be JSON-serialisable",
    ),
    case(
        "save_checkpoint",
        lambda t: ck.save_checkpoint(t / "c", {"k": KEY}),
        TypeError,
        r"is a PRNG key array; store `jax.random.key_data",
    ),  # fmt: skip
    case("load_checkpoint", lambda t: ck.load_checkpoint(3, W), TypeError, r"`path` must be a f"),
    case("read_checkpoint_info", lambda t: ck.read_checkpoint_info(None), TypeError, r"`path`"),
    case(
        "atomic_write_bytes",
        lambda t: ck.atomic_write_bytes(None, b""),
        TypeError,
        r"`atomic_write_bytes`: `path` must be a file path",
    ),
    case(
        "load_params",
        lambda t: (lj.save_params(t / "p", np.zeros(3)), lj.load_params(t / "p", np.zeros(4))),
        ck.CheckpointError,
        r"saved float64\[3\], expected float64\[4\]",
    ),
]


@pytest.mark.parametrize("row", CHECKPOINTS, ids=ids(CHECKPOINTS))
def test_checkpoints(row, tmp_path):
    run_case(row, tmp_path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.text(max_size=5)
        | st.binary(max_size=8),
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
        ),
        max_leaves=8,
    )
)
def test_any_payload_with_a_valid_checksum_is_refused_cleanly(tmp_path, content):
    import hashlib

    from flax.serialization import msgpack_serialize

    payload = msgpack_serialize(content)
    (tmp_path / "p").write_bytes(ck.MAGIC + hashlib.sha256(payload).digest() + payload)
    with pytest.raises(ck.CheckpointError, match=r"is corrupted|holds a .* file, not a"):
        lj.load_params(tmp_path / "p", like=W)


# ---------------------------------------------------------------------------------------------
# Data loaders and helpers
# ---------------------------------------------------------------------------------------------


def csv_file(t, text: str | bytes, name="d.csv"):
    path = t / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


SERIES = np.arange(20.0, dtype=np.float32)

DATA = [
    case("load_csv", lambda t: ld.load_csv(None), TypeError, r"`load_csv`: `path` must be a file"),
    case("load_csv", lambda t: ld.load_csv(t / "none.csv"), ValueError, r"CSV file not found"),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, "t\u00e9mp,x\n1,2\n".encode("latin-1"))),
        ValueError,
        r"d\.csv is not UTF-8 text \(invalid continuation byte at byte 1\)",
    ),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")),
        ValueError,
        r"d\.csv is not UTF-8 text",
    ),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, "x,y\n1,2\n3,1e39\n")),
        ValueError,
        r"row 3, column 'y': '1e39' is not a finite float32 number",
    ),
    case("load_csv", lambda t: ld.load_csv(csv_file(t, "x\n1\nnan\n")), ValueError, r"'nan' is n"),
    case("load_csv", lambda t: ld.load_csv(csv_file(t, "x\n1\n-inf\n")), ValueError, r"finite"),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, "x,y\n1,2\n3,oops\n" + "5,6\n" * 30)),
        ValueError,
        r"row 3, column 'y': 'oops' is not a number\. Name the columns",
    ),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, "x,y\n" + "5,6\n" * 30 + "3,oops\n")),
        ValueError,
        r"row 32, column 'y': 'oops' is not a number",  # past the first 20 rows too
    ),
    case("load_csv", lambda t: ld.load_csv(csv_file(t, "x\n1\n\n2\n")), ValueError, r"row 3 is bl"),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, "x,y\n1,2\n3,4,5\n")),
        ValueError,
        r"row 3 has 3 cells but the header has 2 columns \['x', 'y'\]",
    ),
    case("load_csv", lambda t: ld.load_csv(csv_file(t, "x,y\n")), ValueError, r"a header row and"),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, "x,temp\n1,2\n"), "tmp"),
        ValueError,
        r"no column 'tmp'; the columns are \['x', 'temp'\]",
    ),
    case("load_csv", lambda t: ld.load_csv(csv_file(t, "x\n1\n"), []), ValueError, r"is empty"),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, "x,x\n1,2\n"), "x"),
        ValueError,
        r"column 'x' appears 2 times \(positions \[0, 1\]\); name it by position",
    ),  # fmt: skip
    case("load_csv", lambda t: ld.load_csv(csv_file(t, "x\n1\n"), [True]), TypeError, r"`columns`"),
    case("load_csv", lambda t: ld.load_csv(csv_file(t, "x\n1\n"), 0.5), TypeError, r"`columns`"),
    case(
        "load_csv",
        lambda t: ld.load_csv(csv_file(t, "d\n1\n"), index_column="d"),
        ValueError,
        r"no column to read besides the index column",
    ),
    case("load_series", lambda t: ld.load_series("tides"), ValueError, r"unknown series 'tides'"),
    case(
        "split_windows",
        lambda t: ld.split_windows(SERIES, 3, ()),
        ValueError,
        r"`split_windows`: `fractions` must be one or more positive numbers.* got \(\)",
    ),
    case("split_windows", lambda t: ld.split_windows(SERIES, 3, (0.5, -0.5)), ValueError, r"posi"),
    case("split_series", lambda t: ld.split_series(SERIES, ()), ValueError, r"`split_series`: `f"),
    case("split_series", lambda t: ld.split_series(SERIES, "abc"), ValueError, r"`fractions`"),
    case("batch_order", lambda t: ld.batch_order(-1, 4, seed=0, epoch=0), ValueError, r"`n` must"),
    case("batch_order", lambda t: ld.batch_order(10, -2, seed=0, epoch=0), ValueError, r"`batch_"),
    case(
        "batch_order",
        lambda t: ld.batch_order(10, 0, seed=0, epoch=0),
        ValueError,
        r"`batch_size` must be (an int >= 1|a positive int); got 0",
    ),
    case("batch_order", lambda t: ld.batch_order(10, 4, seed=-1, epoch=0), ValueError, r"`seed`"),
    case("batch_order", lambda t: ld.batch_order(10, 2.0, seed=0, epoch=0), TypeError, r"batch_"),
    case(
        "batch_order",
        lambda t: ld.batch_order(4, 2, seed=0, epoch=0, shuffle="y"),
        TypeError,
        r"`batch_order`: `shuffle` must be True or False",
    ),  # fmt: skip
    case(
        "fit_normalizer",
        lambda t: ld.fit_normalizer(np.zeros((0, 2), np.float32)),
        ValueError,
        r"`fit_normalizer`: `series` has 0 rows \(shape \(0, 2\)\)",
    ),
    case("fit_normalizer", lambda t: ld.fit_normalizer(["a"]), ValueError, r"must be a numeric"),
    case("sliding_windows", lambda t: ld.sliding_windows(SERIES, 0), ValueError, r"`window` mu"),
    case("sliding_windows", lambda t: ld.sliding_windows(SERIES[:3], 5), ValueError, r"too short"),
    case("pad_sequences", lambda t: ld.pad_sequences([]), ValueError, r"must not be empty"),
    case("build_vocab", lambda t: ld.build_vocab(""), ValueError, r"`build_vocab`: `text` is em"),
    case("load_text", lambda t: ld.load_text(csv_file(t, b"\xff\xfe\x00a")), ValueError, r"UTF-8"),
    case("text_stream", lambda t: ld.text_stream(np.arange(3), 4), ValueError, r"too few"),
    case("adding_problem", lambda t: ld.adding_problem(True, 4, 10), TypeError, r"got bool"),
    case("copy_task", lambda t: ld.copy_task(0, 0, 10), ValueError, r"`n` must be >= 1; got 0"),
    case("sine_classification", lambda t: ld.sine_classification("a", 4, 10), TypeError, r"key"),
    case("synthetic_series", lambda t: ld.synthetic_series(0, 0), ValueError, r">= "),
    case("synthetic_series", lambda t: ld.synthetic_series(0, 9, noise=-1), ValueError, r"`noise`"),
    case("text_stream", lambda t: ld.text_stream(np.arange(9), 0), ValueError, r"`batch_size` mu"),
    case("text_stream", lambda t: ld.text_stream(np.ones((3, 3), int), 2), ValueError, r"1-D"),
    case("text_stream", lambda t: ld.text_stream(np.ones(9), 2), TypeError, r"integer token ids"),
    case(
        "normalize",
        lambda t: ld.normalize(ld.fit_normalizer(np.ones((4, 2))), np.ones((3, 2)), columns=[5]),
        ValueError,
        r"`normalize`: `columns` \[5\] out of range for a normalizer of 2 features",
    ),
    case(
        "denormalize",
        lambda t: ld.denormalize(ld.fit_normalizer(np.ones((4, 2))), np.ones((3, 5))),
        ValueError,
        r"`denormalize`: `x` must have 2 features on its last axis",
    ),
]


@pytest.mark.parametrize("row", DATA, ids=ids(DATA))
def test_data(row, tmp_path):
    run_case(row, tmp_path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=60) | st.text(alphabet='x,1.5e\n\r-"nai9 ', max_size=40))
def test_load_csv_reads_every_cell_or_says_why(tmp_path, content):
    path = tmp_path / "h.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    try:
        s = ld.load_csv(path)
    except ValueError as e:
        assert str(path) in str(e) or "h.csv" in str(e)
        return
    assert np.isfinite(s.values).all() and s.values.dtype == np.float32
    assert len(s.index) == s.values.shape[0] and len(s.columns) == s.values.shape[1]


# ---------------------------------------------------------------------------------------------
# The `lstm-jax` command: one line on stderr and exit status 1 for bad files and data
# ---------------------------------------------------------------------------------------------


def checkpoint_with(config):
    def make(t):
        ck.save_checkpoint(t / "checkpoint.msgpack", {"x": np.zeros(1)}, config=config)
        return ["evaluate", str(t), "--no-plot"]

    return make


def train_on(text: str | bytes):
    def make(t):
        return ["train", "--data", str(csv_file(t, text)), "--no-plot", "--no-progress",
                "--out", str(t / "run")]  # fmt: skip

    return make


class CliCase(NamedTuple):
    entry: str
    argv: Any  # (tmp_path) -> argv
    code: int
    match: str


FULL = {"cell": "lstm", "layers": 1, "seed": 0, "hidden": 8, "window": 10, "epochs": 1,
        "batch_size": 4, "lr": 0.01}  # fmt: skip

CLI = [
    CliCase("cli", checkpoint_with({}), 1, r"its config has no `task`; `lstm-jax` reads"),
    CliCase("cli", checkpoint_with({"task": "tides"}), 1, r"its config has task 'tides'"),
    CliCase("cli", checkpoint_with({"task": 3}), 1, r"its config has task 3"),
    CliCase(
        "cli",
        checkpoint_with({**FULL, "task": "forecast", "window": "10"}),
        1,
        r"its config cannot rebuild the 'forecast' model: window='10'",
    ),
    CliCase(
        "cli",
        checkpoint_with({"task": "charlm"}),
        1,
        r"cannot rebuild the 'charlm' model: cell \(missing\), layers \(missing\)",
    ),
    CliCase(
        "cli",
        lambda t: (
            checkpoint_with({})(t),
            ["train", "--resume", "--out", str(t), "--no-plot", "--no-progress"],
        )[1],
        1,
        r"its config has no `task`",
    ),
    CliCase("cli", train_on("x,y\n1,2\n3,oops\n"), 1, r"row 3, column 'y': 'oops' is not a num"),
    CliCase("cli", train_on("date,x\n2001-01,1\n"), 1, r"column 'date': '2001-01' is not a num"),
    CliCase("cli", train_on("x\n1\n1e39\n"), 1, r"'1e39' is not a finite float32 number"),
    CliCase("cli", train_on("t\u00e9mp\n1\n".encode("latin-1")), 1, r"is not UTF-8 text"),
]


@pytest.mark.parametrize("row", CLI, ids=[f"cli-{i}" for i in range(len(CLI))])
def test_cli(row, tmp_path, capsys):
    code = main(row.argv(tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == row.code, err
    assert len(err.splitlines()) == 1 and err.startswith("lstm-jax: error: "), err
    assert "internal error" not in err
    import re

    assert re.search(row.match, err), err


# ---------------------------------------------------------------------------------------------
# Core: cells, scan and lstm_scan, sequence masks, layers and heads
# ---------------------------------------------------------------------------------------------

C4 = lj.LSTMCell(4)
P4 = C4.init(KEY, 3)
XS3 = jnp.ones((2, 5, 3))
RNN2 = lj.LSTM(4, num_layers=2)
RP2 = RNN2.init(KEY, 3)


def scan(*args, **kw):
    return lj.scan(C4, P4, XS3, *args, **kw)


CORE = [
    case(
        "LSTMCell",
        lambda: lj.LSTMCell(4).initial_carry(-1),
        ValueError,
        r"`LSTMCell.initial_carry`: `batch_shape` must not be negative; got \(-1,\)",
    ),
    case(
        "GRUCell",
        lambda: lj.GRUCell(4).initial_carry((2.5,)),
        TypeError,
        r"`GRUCell.initial_carry`: `batch_shape` must be a tuple of ints .* or an int",
    ),
    case(
        "StackedRNN",
        lambda: lj.LSTM(4).initial_carry("2"),
        TypeError,
        r"`LSTMCell.initial_carry`: `batch_shape` must be a tuple of ints",
    ),
    case("LSTMCell", lambda: lj.LSTMCell(4, peephole="no"), TypeError, r"`peephole` must be True"),
    case("LSTMCell", lambda: lj.LSTMCell(4, use_bias="False"), TypeError, r"`use_bias` must be"),
    case("LSTMCell", lambda: lj.LSTMCell(4, layer_norm="False"), TypeError, r"`layer_norm` must"),
    case("LSTMCell", lambda: lj.LSTMCell(4, forget_bias=float("nan")), ValueError, r"finite"),
    case("LSTMCell", lambda: lj.LSTMCell(4, forget_bias=float("inf")), ValueError, r"finite"),
    case("LSTMCell", lambda: lj.LSTMCell(4, forget_bias="abc"), TypeError, r"`forget_bias`"),
    case("LSTMCell", lambda: lj.LSTMCell(4, forget_bias=None), TypeError, r"`forget_bias`"),
    case("LSTMCell", lambda: lj.LSTMCell(4, dtype=jnp.int8), TypeError, r"`dtype` must be a float"),
    case("LSTMCell", lambda: lj.LSTMCell(4, dtype=jnp.int32), TypeError, r"floating dtype"),
    case("LSTMCell", lambda: lj.LSTMCell(4, dtype=bool), TypeError, r"floating dtype.*bool"),
    case("LSTMCell", lambda: lj.LSTMCell(4, dtype="float33"), TypeError, r"'float33'"),
    case("LSTMCell", lambda: lj.LSTMCell(4, param_dtype=jnp.int32), TypeError, r"`param_dtype`"),
    case("LSTMCell", lambda: lj.LSTMCell(True), TypeError, r"`hidden_size` must be a positive"),
    case("LSTMCell", lambda: lj.LSTMCell("8"), TypeError, r"`hidden_size` must be a positive"),
    case("LSTMCell", lambda: lj.LSTMCell(4, proj_size=4), ValueError, r"`proj_size` must be"),
    case("LSTMCell", lambda: C4.init(42, 3), TypeError, r"`LSTMCell.init`: `key` must be a PRNG"),
    case("LSTMCell", lambda: C4.init(None, 3), TypeError, r"`key` must be a PRNG key"),
    case("LSTMCell", lambda: C4.init("abc", 3), TypeError, r"`key` must be a PRNG key"),
    case("LSTMCell", lambda: C4.init(jax.random.split(KEY), 3), ValueError, r"not a batch"),
    case("LSTMCell", lambda: C4(P4, C4.initial_carry((2,)), jnp.ones((2, 5))), ValueError, r"5 f"),
    case("GRUCell", lambda: lj.GRUCell(4, reset_after="yes"), TypeError, r"`reset_after`"),
    case("GRUCell", lambda: lj.GRUCell(0), ValueError, r"`hidden_size` must be a positive int"),
    case("SimpleRNNCell", lambda: lj.SimpleRNNCell(4, activation="nope"), ValueError, r"one of"),
    case("ConvLSTMCell", lambda: lj.ConvLSTMCell(4, kernel_size=(2, 3)), ValueError, r"odd"),
    case("ConvLSTMCell", lambda: lj.ConvLSTMCell(4, kernel_size=3), ValueError, r"tuple of two"),
    case("scan", lambda: lj.scan("lstm", P4, XS3), TypeError, r"`cell` must be a cell.*str"),
    case("scan", lambda: lj.scan(RNN2, RP2, XS3), TypeError, r"looks like a layer"),
    case("scan", lambda: scan(unroll=-1), ValueError, r"`unroll` must be None, a bool or an int"),
    case("scan", lambda: scan(unroll=2.5), TypeError, r"`unroll` must be None"),
    case("scan", lambda: scan(unroll="8"), TypeError, r"`unroll` must be None"),
    case("scan", lambda: scan(time_major="no"), TypeError, r"`time_major` must be True or False"),
    case("scan", lambda: scan(reverse=1), TypeError, r"`reverse` must be True or False"),
    case("scan", lambda: scan(recurrent_mask=jnp.ones((3, 4))), ValueError, r"shape of one step"),
    case("scan", lambda: scan(lengths=jnp.array([1.0, 2.0])), TypeError, r"integer array"),
    case("scan", lambda: scan(lengths=jnp.array([9, 2])), ValueError, r"lie in \[0, T=5\]"),
    case("scan", lambda: scan(lengths=np.array([9, 2], np.uint8)), ValueError, r"\[0, T=5\]"),
    case("scan", lambda: scan(C4.initial_carry((3,))), ValueError, r"`carry\.h` must have shape"),
    case(
        "scan",
        lambda: scan(jax.tree.map(lambda a: a.astype(jnp.bfloat16), C4.initial_carry((2,)))),
        TypeError,
        r"`carry` has the wrong dtype.*bfloat16",
    ),
    case("scan", lambda: lj.scan(C4, P4, jnp.ones((2, 5, 3), jnp.int32)), TypeError, r"floating"),
    case("lstm_scan", lambda: lj.lstm_scan(lj.GRUCell(4), P4, XS3), TypeError, r"LSTMCell"),
    case("sequence_mask", lambda: lj.sequence_mask(jnp.array([1.5]), 3), TypeError, r"integer"),
    case("sequence_mask", lambda: lj.sequence_mask(jnp.array([1]), -1), ValueError, r"`T` must"),
    case("sequence_mask", lambda: lj.sequence_mask(jnp.array([4]), 3), ValueError, r"\[0, T=3\]"),
    case("last_step", lambda: lj.last_step(XS3, jnp.array([-1, 2])), ValueError, r"\[0, T=5\]"),
    case("reverse_padded", lambda: lj.reverse_padded(XS3, jnp.array([6, 1])), ValueError, r"T=5"),
    case("dropout", lambda: lj.dropout(KEY, XS3, 1.0), ValueError, r"`rate` must be a finite"),
    case("dropout", lambda: lj.dropout(7, XS3, 0.5), TypeError, r"`key` must be a PRNG key"),
    case("StackedRNN", lambda: lj.LSTM(4, num_layers=np.int64(0)), ValueError, r"`num_layers`"),
    case("StackedRNN", lambda: lj.LSTM(4, bidirectional="True"), TypeError, r"`bidirectional`"),
    case("StackedRNN", lambda: lj.StackedRNN("lstm"), TypeError, r"`cell` must be a cell"),
    case("StackedRNN", lambda: RNN2.apply(RP2, XS3, key=42), TypeError, r"`key` must be a PRNG"),
    case(
        "StackedRNN",
        lambda: RNN2.apply((RP2[0], lj.LayerParams(C4.init(KEY, 8))), XS3),
        ValueError,
        r"`params\[1\]\.forward\.w_x` must have shape \(4, 16\).*layer 1",
    ),
    case("StackedRNN", lambda: RNN2.step(RP2, None, jnp.ones((2, 5))), ValueError, r"5 features"),
    case("LSTM", lambda: lj.LSTM(4, dropout=1.5), ValueError, r"`dropout` must be a finite"),
    case("GRU", lambda: lj.GRU(4, recurrent_dropout=-0.1), ValueError, r"`recurrent_dropout`"),
    case("SimpleRNN", lambda: lj.SimpleRNN(4, unroll=0), ValueError, r"`unroll` must be"),
    case("bidirectional_final", lambda: lj.bidirectional_final("c"), TypeError, r"`carry` must"),
    case("Dense", lambda: lj.Dense(np.int64(0)), ValueError, r"`features` must be a positive"),
    case("Dense", lambda: lj.Dense(2, dtype="int8"), TypeError, r"floating dtype"),
    case("Dense", lambda: lj.Dense(2).init(None, 3), TypeError, r"`key` must be a PRNG key"),
    case("sLSTMCell", lambda: lj.sLSTMCell(8).init(42, 3), TypeError, r"`sLSTMCell.init`: `key`"),
    case("mLSTMCell", lambda: lj.mLSTMCell(8).init(42, 3), TypeError, r"`mLSTMCell.init`: `key`"),
    case("minLSTMCell", lambda: lj.minLSTMCell(8).init(7, 3), TypeError, r"`key` must be a PRNG"),
    case("minGRUCell", lambda: lj.minGRUCell(8).init("k", 3), TypeError, r"`key` must be a PRNG"),
    case("AdditiveAttention", lambda: lj.AdditiveAttention(4).init(1, 3), TypeError, r"`key`"),
]


@pytest.mark.parametrize("row", CORE, ids=ids(CORE))
def test_core(row):
    run_case(row)


def test_narrow_lengths_never_wrap():
    xs = jax.random.normal(KEY, (2, 300, 3))
    lengths = np.array([10, 2], np.uint8)
    want = lj.scan(C4, P4, xs, lengths=lengths.astype(np.int32))
    got = jax.jit(lambda n: lj.scan(C4, P4, xs, lengths=n))(jnp.asarray(lengths))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_out_of_range_lengths_under_jit_poison_outputs_and_carry():
    carry, ys = jax.jit(lambda n: lj.scan(C4, P4, XS3, lengths=n))(jnp.array([7, 2]))
    assert all(bool(jnp.all(jnp.isnan(leaf))) for leaf in jax.tree.leaves((carry, ys)))
    assert bool(jnp.all(jnp.isnan(jax.jit(lj.last_step)(XS3, jnp.array([-1, 2])))))


def test_nan_padding_never_reaches_the_gradients():
    xs = XS3.at[1, 3:].set(jnp.nan)
    lengths = jnp.array([5, 3])
    for cell in (C4, lj.GRUCell(4), lj.SimpleRNNCell(4)):
        p = cell.init(KEY, 3)
        g = jax.grad(lambda p, x, c=cell: jnp.sum(lj.scan(c, p, x, lengths=lengths)[1]), (0, 1))(
            p, xs
        )
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))
    for rnn in (lj.LSTM(4), lj.GRU(4), lj.SimpleRNN(4)):  # the layers' default fast path too
        p = rnn.init(KEY, 3)
        g = jax.grad(lambda p, r=rnn: jnp.sum(r.apply(p, xs, lengths=lengths)[1]))(p)
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))
        carry, _ = jax.jit(lambda n, r=rnn, p=p: r.apply(p, XS3, lengths=n))(jnp.array([9, 2]))
        assert all(bool(jnp.all(jnp.isnan(leaf))) for leaf in jax.tree.leaves(carry))


def test_layer_norm_survives_huge_inputs():
    cell = lj.LSTMCell(4, layer_norm=True)
    p = cell.init(KEY, 3)
    x = jax.random.normal(KEY, (2, 5, 3))
    _, small = lj.scan(cell, p, x)
    _, huge = lj.scan(cell, p, x * 1e20)
    assert float(jnp.max(jnp.abs(huge))) > 0.1  # it was exactly 0 when the variance overflowed
    np.testing.assert_allclose(huge, lj.scan(cell, p, x * 1e19)[1], atol=1e-4)
    assert small.shape == huge.shape


def test_sizes_accept_any_integral_type():
    assert lj.LSTMCell(np.int64(8)) == lj.LSTMCell(8)
    assert lj.ConvLSTMCell(4, kernel_size=[3, 3]) == lj.ConvLSTMCell(4, kernel_size=(3, 3))


# ---------------------------------------------------------------------------------------------
# Coverage: every public function and class of these modules has at least one row above
# ---------------------------------------------------------------------------------------------

AREAS = [
    "lstm_jax.training.fit",
    "lstm_jax.training.step",
    "lstm_jax.training.tbptt",
    "lstm_jax.training.ensemble",
    "lstm_jax.training.callbacks",
    "lstm_jax.training.options",
    "lstm_jax.training.checks",
    "lstm_jax.checkpoint",
    "lstm_jax.data.batching",
    "lstm_jax.data.series",
    "lstm_jax.data.synthetic",
    "lstm_jax.data.text",
    "lstm_jax.data.windows",
    "lstm_jax.cells.lstm",
    "lstm_jax.cells.gru",
    "lstm_jax.cells.simple_rnn",
    "lstm_jax.cells.convlstm",
    "lstm_jax.sequence.masks",
    "lstm_jax.layers.stacked",
    "lstm_jax.layers.dense",
]
# Public names that take no input worth refusing (result types, base classes, constants).
NO_INPUT = {"FitResult", "TrainState", "TrainInfo", "Checkpoint", "CheckpointError", "Callback",
            "CallbackList", "Series", "Normalizer", "Vocab", "ProgressBar",
            # params, carries and gates of the cells and layers: NamedTuples of arrays
            "LSTMState", "Peepholes", "LSTMLayerNorm", "LSTMParams", "LSTMGates", "GRUParams",
            "GRUGates", "SimpleRNNParams", "ConvLSTMParams", "LayerParams", "LayerState",
            "DenseParams"}  # fmt: skip
# Helpers that the entry points above validate for them (they are called through those).
THROUGH = {"lstm_equations", "split_gates",  # the LSTM step, checked by LSTMCell.__call__
           "check_loss", "check_loss_fn", "train_call", "check_trainable", "check_clip_norm",
           "first_bad_step", "raise_if_bad",
           "mean_metrics", "checkpoint_template", "check_callbacks", "optimizer_with_clipping",
           "num_examples", "take", "split_last", "member_batch_keys", "normalize", "denormalize",
           "as_2d", "copy_task_baseline"}  # fmt: skip


def public_names(module_name):
    mod = importlib.import_module(module_name)
    for name, obj in vars(mod).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) == module_name:
            yield name


def test_every_public_entry_point_has_bad_input_cases():
    covered = {r.entry for r in TRAINING + CHECKPOINTS + DATA + CORE}
    missing = [
        f"{m}.{n}"
        for m in AREAS
        for n in public_names(m)
        if n not in covered and n not in NO_INPUT | THROUGH
    ]
    assert not missing, f"add bad-input rows for {missing}"
