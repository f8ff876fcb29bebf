"""The subcommands of ``lstm-jax``: each takes the parsed arguments and writes its outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_info,
    save_params,
)
from lstm_jax.cli import speech
from lstm_jax.cli.models import init_params
from lstm_jax.cli.report import (
    format_table,
    plot_continuation,
    plot_forecast,
    plot_history,
    plot_text,
    write_history_csv,
    write_json,
)
from lstm_jax.cli.tasks import DEFAULTS, prepare, test_metrics
from lstm_jax.data import Normalizer, load_csv, normalize
from lstm_jax.sharding import mesh_for
from lstm_jax.training.callbacks import EarlyStopping, ProgressBar
from lstm_jax.training.fit import Checkpointing, FitConfig, checkpoint_template, fit

CHECKPOINT = "checkpoint.msgpack"


def make_optimizer(cfg: dict, total_steps: int) -> optax.GradientTransformation:
    """adam at ``cfg['lr']`` (cosine-decayed to 0 over the run with ``schedule='cosine'``),
    after global-norm clipping when ``clip_norm`` is set; the rate is recorded per epoch."""
    lr = cfg["lr"]
    if cfg.get("schedule") == "cosine":
        lr = optax.cosine_decay_schedule(cfg["lr"], max(1, total_steps))
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=lr)
    if cfg.get("clip_norm"):
        opt = optax.chain(optax.clip_by_global_norm(cfg["clip_norm"]), opt)
    return opt


def train(args: argparse.Namespace) -> None:
    out = Path(args.out or f"runs/{args.task}")
    ckpt = out / CHECKPOINT
    if args.resume:
        if not ckpt.exists():
            raise ValueError(f"--resume: no checkpoint at {ckpt}; train without --resume first.")
        cfg = _stored_config(ckpt)
        if args.epochs:
            cfg["epochs"] = args.epochs
    else:
        cfg = _train_config(args)
    prep = prepare(cfg)
    n_train = len(jax.tree.leaves(prep.train)[0])
    steps = cfg["epochs"] * -(-n_train // cfg["batch_size"])
    optimizer = make_optimizer(cfg, steps)
    params = init_params(prep.model, cfg["seed"])
    print(_describe(cfg, prep, n_train))
    callbacks = [EarlyStopping(cfg["patience"])] if cfg.get("patience") else []
    if not args.no_progress:
        callbacks.append(ProgressBar())
    result = fit(
        prep.loss_fn,
        params,
        prep.train,
        val_data=prep.val,
        optimizer=optimizer,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        key=prep.extra.get("train_key"),  # speech: SpecAugment masks
        callbacks=callbacks,
        config=FitConfig(seed=cfg["seed"], mesh=mesh_for(args.devices, args.model_parallel)),
        checkpoint=Checkpointing(ckpt, resume=args.resume, config=cfg),
    )
    save_params(out / "params.msgpack", result.params, config=cfg)
    h = result.history
    best = f"best epoch {result.best_epoch}" + (", stopped early" if result.stopped_early else "")
    print(
        f"trained {h['epoch'][-1]} epochs, {h['step'][-1]} steps in {h['time_s'][-1]:.1f} s "
        f"(train loss {h['loss'][-1]:.4g}, val loss {h['val_loss'][-1]:.4g}; {best})"
    )
    _report(cfg, prep, result.params, out, args.no_plot, history=h)


def _train_config(args) -> dict:
    d = DEFAULTS[args.task]
    cfg = {
        "task": args.task,
        "cell": args.cell,
        "layers": args.layers,
        "seed": args.seed,
        "hidden": args.hidden or d["hidden"],
        "window": args.window or d["window"],
        "epochs": args.epochs or d["epochs"],
        "batch_size": args.batch_size or d["batch_size"],
        "lr": args.lr or d["lr"],
        "schedule": args.schedule,
        "clip_norm": args.clip_norm,
        "patience": args.patience,
        "n_examples": args.n_examples,
    }
    if args.task == "forecast":
        cfg["data"] = args.data or "elnino"
        cfg["columns"] = _csv_list(args.columns)
        cfg["target"] = _csv_list(args.target)
        cfg["index_column"] = args.index_column
    elif args.task == "speech":
        cfg["data"] = str(Path(args.data).resolve()) if args.data else None
        cfg["subsample"] = args.subsample or 3
    elif args.data or args.columns or args.target:
        raise ValueError(f"--data/--columns/--target apply to --task forecast, not {args.task}.")
    if args.subsample and args.task != "speech":
        raise ValueError(f"--subsample applies to --task speech, not {args.task}.")
    if args.task == "charlm":
        cfg["text"] = str(Path(args.text).resolve()) if args.text else None
    elif args.text:
        raise ValueError(f"--text applies to --task charlm, not {args.task}.")
    if cfg["task"] == "forecast" and cfg["data"] not in ("elnino", "co2"):
        cfg["data"] = str(Path(cfg["data"]).resolve())
    elif cfg["task"] == "forecast" and (args.columns or args.index_column is not None):
        # a built-in series has its own columns: the option would be ignored
        raise ValueError(
            f"--columns/--index-column choose what to read from a CSV given with --data; the "
            f"built-in series {cfg['data']!r} has its own."
        )
    return cfg


def _csv_list(text):
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _describe(cfg, prep, n_train) -> str:
    if cfg["task"] == "speech":
        return speech.describe(cfg, prep, n_train)
    m = prep.model
    what = {
        "forecast": f"forecast {cfg.get('data')}",
        "charlm": "character LM",
        "classify": "sequence classification",
        "adding": "adding problem",
    }[cfg["task"]]
    return (
        f"{what}: {cfg['cell'].upper()}({m.hidden_size}) x{m.num_layers} + Dense, window "
        f"{cfg['window']}, {n_train} training examples, {cfg['epochs']} epochs, "
        f"batch {cfg['batch_size']}, adam lr {cfg['lr']}"
    )


def _report(cfg, prep, params, out: Path, no_plot: bool, history=None, name="metrics") -> dict:
    rows, flat = test_metrics(cfg, prep, params)
    print(format_table(rows))
    record = {"config": cfg, "test": flat}
    if history is not None:
        record["history"] = history
        write_history_csv(out / "history.csv", history)
    write_json(out / f"{name}.json", record)
    files = [out / f"{name}.json"]
    if not no_plot:
        files += _plots(cfg, prep, params, out, history)
    print("wrote " + ", ".join(str(f) for f in files))
    return flat


def _plots(cfg, prep, params, out: Path, history) -> list[Path]:
    files = []
    if history is not None:
        plot_history(out / "loss.png", history, f"{cfg['task']}: loss per epoch")
        files.append(out / "loss.png")
    if cfg["task"] == "forecast":
        truth, pred = prep.extra["truth"], prep.extra["pred"]
        col = cfg["columns"][cfg["target"][0]]
        plot_forecast(
            out / "forecast.png",
            truth,
            {"model (one step ahead)": pred},
            f"{cfg['data']}: test split",
            col,
        )
        files.append(out / "forecast.png")
    if cfg["task"] == "charlm":
        text = _sample(cfg, prep, params, prep.extra["prompt"], 600, 0, 0.8)
        (out / "sample.txt").write_text(text)
        plot_text(out / "sample.png", text, "sample at temperature 0.8")
        files += [out / "sample.txt", out / "sample.png"]
    if cfg["task"] == "speech":
        speech.plot_alignment(out / "alignment.png", prep, params)
        files.append(out / "alignment.png")
    return files


def _stored_config(path: Path) -> dict:
    """The config of a checkpoint, refused with one line when a task cannot rebuild from it."""
    cfg, _ = read_checkpoint_info(path)
    task = cfg.get("task")
    if not isinstance(task, str) or task not in DEFAULTS:
        got = "has no `task`" if task is None else f"has task {task!r}"
        raise CheckpointError(
            f"{path}: its config {got}; `lstm-jax` reads checkpoints of the tasks "
            f"{list(DEFAULTS)} written by `lstm-jax train`."
        )
    need = {"cell": str, "layers": int, "seed": int}
    for k, v in DEFAULTS[task].items():  # a default of None: the task may store None
        need[k] = (int, type(None)) if v is None else (int, float) if isinstance(v, float) else int
    bad = [
        f"{k} (missing)" if k not in cfg else f"{k}={cfg[k]!r}"
        for k, t in need.items()
        if k not in cfg or not isinstance(cfg[k], t) or isinstance(cfg[k], bool)
    ]
    if bad:
        raise CheckpointError(
            f"{path}: its config cannot rebuild the {task!r} model: {', '.join(bad)}; was it "
            "written by `lstm-jax train`?"
        )
    return cfg


def _load(path_text: str, task: str | None = None):
    path = Path(path_text)
    path = path / CHECKPOINT if path.is_dir() else path
    cfg = _stored_config(path)
    if task is not None and cfg.get("task") != task:
        raise ValueError(f"{path} holds a {cfg.get('task')!r} model; this needs a {task!r} one.")
    prep = prepare(cfg)
    params = init_params(prep.model, 0)
    like = checkpoint_template(params, make_optimizer(cfg, 1))
    try:
        tree = load_checkpoint(path, like).tree
    except CheckpointError as e:
        raise CheckpointError(f"{e} (was the file written by another version?)") from None
    return cfg, prep, tree["best_params"], path.parent


def evaluate(args) -> None:
    cfg, prep, params, where = _load(args.checkpoint)
    if args.data:
        if cfg["task"] != "forecast":
            raise ValueError("--data applies to forecast checkpoints only.")
        cfg["data"] = str(Path(args.data).resolve())
        prep = prepare(cfg)  # the stored normaliser and columns are reused
    _report(cfg, prep, params, Path(args.out or where), args.no_plot, name="evaluation")


def forecast(args) -> None:
    cfg, prep, params, where = _load(args.checkpoint, "forecast")
    series = prep.extra["series"]
    if args.data:
        series = load_csv(args.data, cfg["columns"], index_column=cfg.get("index_column"))
    norm, targets = Normalizer.from_dict(cfg["normalizer"]), cfg["target"]
    F, T = series.values.shape[1], cfg["window"]
    if args.steps > 1 and targets != list(range(F)):
        raise ValueError("--steps > 1 needs a model that predicts every input column.")
    if len(series.values) < T:
        raise ValueError(f"the series has {len(series.values)} steps; the model reads {T}.")
    window = normalize(norm, series.values[-T:])  # (T, F)
    step = jax.jit(lambda p, x: prep.model.apply(p, x)[1])  # (1, n_targets)
    preds = []
    for _ in range(args.steps):  # recursive: each forecast becomes the next input
        y = np.asarray(step(params, jnp.asarray(window[None])))[0]  # (n_targets,)
        preds.append(y)
        window = np.concatenate([window[1:], y[None]], axis=0)
    future = np.stack(preds) * norm.std[targets] + norm.mean[targets]  # (steps, n_targets)
    names = [cfg["columns"][t] for t in targets]
    print(
        format_table(
            [("step", *names), *[(f"+{i + 1}", *map(float, r)) for i, r in enumerate(future)]]
        )
    )
    out = Path(args.out or where)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["step," + ",".join(names)] + [
        f"{i + 1}," + ",".join(f"{v:.6g}" for v in r) for i, r in enumerate(future)
    ]
    (out / "forecast.csv").write_text("\n".join(lines) + "\n")
    files = [out / "forecast.csv"]
    if not args.no_plot:
        plot_continuation(
            out / "forecast_future.png",
            series.values[-3 * T :, targets],
            future,
            f"{series.name}: {args.steps}-step forecast",
            names[0],
        )
        files.append(out / "forecast_future.png")
    print("wrote " + ", ".join(str(f) for f in files))


def _sample(cfg, prep, params, prompt, length, seed, temperature) -> str:
    vocab = prep.extra["vocab"]
    tokens = vocab.encode(prompt)
    sample = jax.jit(prep.model.sample, static_argnums=(2, 4))
    out = sample(params, jnp.asarray(tokens), length, jax.random.key(seed), float(temperature))
    return prompt + vocab.decode(out)


def generate(args) -> None:
    cfg, prep, params, where = _load(args.checkpoint, "charlm")
    if not args.prompt:
        raise ValueError("--prompt must hold at least one character.")
    text = _sample(cfg, prep, params, args.prompt, args.length, args.seed, args.temperature)
    print(text)
    out = Path(args.out or where)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generated.txt").write_text(text)
    print(f"wrote {out / 'generated.txt'}")


def transcribe(args) -> None:
    speech.transcribe(args)
