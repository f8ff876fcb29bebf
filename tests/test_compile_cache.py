"""The disk cache of compiled programs: what it stores, that a later process loads instead of
compiling and computes the same, its errors, and the command's use of it."""

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax.cli import main
from lstm_jax.cli.models import init_params
from lstm_jax.cli.tasks import prepare
from lstm_jax.compile_cache import cache_settings, default_cache_dir, restore_cache_settings

# A child process: takes a tiny LSTM's loss and gradient, prints them and how many programs it
# compiled and how many it loaded from the cache (JAX times a load as a backend compile too).
CHILD = """
import json, sys
import jax, jax.numpy as jnp
from jax import monitoring
import lstm_jax as lj
counts = {"requests": 0, "loaded": 0}
def on_event(event, **kw):
    if event == "/jax/compilation_cache/cache_hits":
        counts["loaded"] += 1
def on_duration(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        counts["requests"] += 1
monitoring.register_event_listener(on_event)
monitoring.register_event_duration_secs_listener(on_duration)
lj.enable_compile_cache(sys.argv[1])
rnn = lj.LSTM(8)
params = rnn.init(jax.random.key(0), 3)
xs = jnp.linspace(-1.0, 1.0, 2 * 5 * 3).reshape(2, 5, 3)
loss = lambda p: jnp.mean(rnn.apply(p, xs)[1] ** 2)
value, grads = jax.jit(jax.value_and_grad(loss))(params)
out = {"loss": float(value), "grad": float(jnp.sum(grads[0].forward.w_h))}
out.update(compiled=counts["requests"] - counts["loaded"], loaded=counts["loaded"])
print(json.dumps(out))
"""


def _child(cache_dir):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_loads_every_program_and_computes_the_same(tmp_path):
    first = _child(tmp_path)
    assert first["compiled"] > 0 and first["loaded"] == 0
    assert any(tmp_path.iterdir())  # programs were written
    second = _child(tmp_path)
    assert second["compiled"] == 0, second  # everything came from the cache
    assert second["loaded"] == first["compiled"]
    assert second["loss"] == first["loss"] and second["grad"] == first["grad"]


@pytest.fixture
def saved_settings():
    settings = cache_settings()
    yield settings
    restore_cache_settings(settings)


def test_enable_sets_jax_options_and_keeps_quick_programs(tmp_path, saved_settings):
    where = lj.enable_compile_cache(tmp_path / "cache")
    assert where == tmp_path / "cache" and where.is_dir()
    assert (where.stat().st_mode & 0o077) == 0  # owner only: the cache is trusted code
    now = cache_settings()
    assert now["jax_compilation_cache_dir"] == str(where)
    assert now["jax_persistent_cache_min_compile_time_secs"] == 0.0
    jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.25)(jnp.arange(7.0)).block_until_ready()
    assert [p for p in where.iterdir() if not p.name.startswith(".")]  # a ~10 ms compile
    restore_cache_settings(saved_settings)
    assert cache_settings() == saved_settings


def test_default_directory_is_per_cpu_and_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LSTM_JAX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    where = default_cache_dir()
    assert where.parent == tmp_path / "lstm_jax" / "xla"
    assert where.name.startswith(f"{__import__('platform').machine()}-")
    assert default_cache_dir() == where  # stable within a machine
    monkeypatch.setenv("LSTM_JAX_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_bad_paths_are_named(tmp_path, monkeypatch, saved_settings):
    with pytest.raises(TypeError, match="`path` must be a directory path.*got int"):
        lj.enable_compile_cache(3)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        lj.enable_compile_cache(afile)
    with pytest.raises(OSError):  # a path that was asked for and cannot be made
        lj.enable_compile_cache(afile / "sub")
    assert cache_settings() == saved_settings  # nothing was changed on the way
    # The default directory cannot be made: one warning, nothing cached, nothing else changes.
    monkeypatch.setenv("LSTM_JAX_CACHE_DIR", str(afile / "sub"))
    with pytest.warns(RuntimeWarning, match="cannot create the compilation cache"):
        assert lj.enable_compile_cache() is None
    assert cache_settings() == saved_settings


TINY = ["--no-progress", "--no-plot", "--epochs", "1", "--hidden", "4", "--window", "12"]


def test_the_command_caches_by_default_and_restores_jax_options(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LSTM_JAX_CACHE_DIR", str(cache))
    monkeypatch.delenv("LSTM_JAX_COMPILE_CACHE", raising=False)
    before = cache_settings()
    if before["jax_compilation_cache_dir"] is not None:
        pytest.skip("JAX has a cache directory of its own here; the command leaves it alone")
    assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0
    assert cache.is_dir() and len(list(cache.iterdir())) > 3
    assert cache_settings() == before  # main() puts JAX's options back


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_command_can_be_told_not_to_cache(tmp_path, monkeypatch, how):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LSTM_JAX_CACHE_DIR", str(cache))
    monkeypatch.delenv("LSTM_JAX_COMPILE_CACHE", raising=False)  # the tests' default is off
    argv = ["train", *TINY, "--out", str(tmp_path / "run")]
    if how == "flag":
        argv.append("--no-compile-cache")
    else:
        monkeypatch.setenv("LSTM_JAX_COMPILE_CACHE", "0")
    before = cache_settings()
    assert main(argv) == 0
    assert not cache.exists()
    assert cache_settings() == before


@pytest.mark.parametrize(
    "cfg",
    [
        {"task": "forecast", "window": 12, "hidden": 6},
        {"task": "charlm", "window": 16, "hidden": 6, "layers": 2},
        {"task": "classify", "cell": "gru", "hidden": 5, "n_examples": 32},
    ],
    ids=lambda c: c["task"],
)
def test_the_commands_jitted_init_draws_the_same_bits_as_eager_init(cfg):
    from lstm_jax.cli import build_parser
    from lstm_jax.cli.commands import _train_config

    argv = ["train", "--task", cfg["task"]]
    for k, v in cfg.items():
        if k != "task":
            argv += [f"--{k.replace('_', '-')}", str(v)]
    prep = prepare(_train_config(build_parser().parse_args(argv)))
    eager = prep.model.init(jax.random.key(5))
    jitted = init_params(prep.model, 5)
    assert jax.tree.structure(eager) == jax.tree.structure(jitted)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_enabling_twice_and_after_compiles_takes_effect(tmp_path, saved_settings):
    jax.jit(lambda x: x * 2.0)(jnp.ones(3)).block_until_ready()  # JAX has decided already
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lj.enable_compile_cache(tmp_path / "a")
        where = lj.enable_compile_cache(tmp_path / "b")
    jax.jit(lambda x: jnp.cos(x) - 0.5)(jnp.ones(5)).block_until_ready()
    assert [p for p in where.iterdir() if not p.name.startswith(".")]


def test_the_readme_block_runs_as_written(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (code,) = [b for b in blocks if "lj.enable_compile_cache()" in b]
    env = dict(os.environ, LSTM_JAX_CACHE_DIR=str(tmp_path / "cache"))
    code += "import jax.numpy as jnp\nprint(float(jnp.sum(jnp.arange(4.0) ** 2)))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["14.0"]
    assert [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]


def test_the_command_runs_on_when_the_cache_cannot_be_made(tmp_path, monkeypatch, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("LSTM_JAX_CACHE_DIR", str(afile / "cache"))
    monkeypatch.delenv("LSTM_JAX_COMPILE_CACHE", raising=False)
    before = cache_settings()
    if before["jax_compilation_cache_dir"] is not None:
        pytest.skip("JAX has a cache directory of its own here; the command leaves it alone")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the command turns the warning into a note
        assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert err.count("lstm-jax: note: cannot create the compilation cache") == 1
    assert (tmp_path / "run" / "metrics.json").exists()
    assert cache_settings() == before
