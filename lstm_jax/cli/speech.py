"""The ``speech`` task of ``lstm-jax``: spoken digits to text with a bidirectional LSTM and CTC.

Audio (the bundled spoken-digit corpus, or ``--data FOLDER`` with a ``manifest.csv``) becomes
utterance-normalised log-mel features (:mod:`lstm_jax.audio`); the encoder stacks
``subsample`` adjacent frames into one step (a third of the steps at the default 3), runs a
bidirectional LSTM stack, and a dense head scores the alphabet's characters plus the CTC blank
at every step. Training minimises the CTC loss per transcript character with SpecAugment masks
drawn from the run's seed; the test split is decoded greedily and by prefix beam search, and
scored by character and word error rates next to a prior baseline.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.audio import (
    ALPHABET,
    FeatureConfig,
    beam_decode,
    cer,
    ctc_loss,
    ctc_min_frames,
    decode_labels,
    encode_transcript,
    greedy_decode,
    read_audio,
    spec_augment,
    utterance_features,
    wer,
)
from lstm_jax.cli.models import CELLS, ModelParams, init_params
from lstm_jax.cli.tasks import Prepared
from lstm_jax.data.speech import load_speech, load_speech_folder
from lstm_jax.layers.dense import Dense
from lstm_jax.layers.stacked import StackedRNN

BEAM_WIDTH = 8


@dataclasses.dataclass(frozen=True)
class SpeechModel:
    """``(B, T, n_mels)`` features with ``(B,)`` lengths -> ``(B, ceil(T / subsample), K)``
    CTC logits, ``K = len(alphabet) + 1`` (class 0 is the blank)."""

    n_mels: int = 40
    n_classes: int = len(ALPHABET) + 1
    hidden_size: int = 64
    num_layers: int = 2
    subsample: int = 3
    cell: str = "lstm"

    @property
    def rnn(self) -> StackedRNN:
        return CELLS[self.cell](self.hidden_size, self.num_layers, bidirectional=True)

    def init(self, key) -> ModelParams:
        k_rnn, k_head = jax.random.split(key)
        rnn = self.rnn
        return ModelParams(
            rnn.init(k_rnn, self.n_mels * self.subsample),
            Dense(self.n_classes).init(k_head, rnn.output_size),
        )

    def steps(self, lengths):
        """Encoder steps of ``lengths`` frames: ``ceil(lengths / subsample)``."""
        return -(-lengths // self.subsample)

    def apply(self, params: ModelParams, feats, lengths):
        """Returns ``(carry, logits (B, T', K))`` with ``T' = ceil(T / subsample)``."""
        b, t, m = feats.shape
        s = self.subsample
        pad = -t % s
        x = jnp.pad(feats, ((0, 0), (0, pad), (0, 0))).reshape(b, (t + pad) // s, s * m)
        carry, hs = self.rnn.apply(params.rnn, x, lengths=self.steps(lengths))  # (B, T', 2H)
        return carry, Dense(self.n_classes).apply(params.head, hs)

    def loss(self, params: ModelParams, batch, key=None):
        """CTC loss per transcript character of ``batch = (feats, lengths, labels,
        label_lengths)``; with ``key``, the features get SpecAugment masks first."""
        feats, lengths, labels, label_lengths = batch
        if key is not None:
            feats = spec_augment(key, feats, lengths)
        _, logits = self.apply(params, feats, lengths)
        nll = ctc_loss(logits, self.steps(lengths), labels, label_lengths)
        return jnp.mean(nll / label_lengths.astype(nll.dtype))


def prepare_speech(cfg: dict) -> Prepared:
    """Features, labels and the model for ``cfg``; fills in ``cfg``'s speech settings."""
    cfg.setdefault("subsample", 3)
    cfg.setdefault("features", dataclasses.asdict(FeatureConfig()))
    fcfg = FeatureConfig(**cfg["features"])
    if cfg.get("data"):
        corpus = load_speech_folder(cfg["data"], sample_rate=fcfg.sample_rate)
    else:
        corpus = load_speech()
    splits = [corpus.train, corpus.val, corpus.test]
    if cfg.get("n_examples"):  # a slice, for quick runs
        n = cfg["n_examples"]
        splits = [splits[0][:n], splits[1][: max(4, n // 4)], splits[2][: max(4, n // 4)]]
    model = SpeechModel(
        fcfg.n_mels, len(ALPHABET) + 1, cfg["hidden"], cfg["layers"], cfg["subsample"], cfg["cell"]
    )
    arrays, kept, skipped = [], [], 0
    for utts in splits:
        data, utts_kept = _arrays(utts, fcfg, model)
        skipped += len(utts) - len(utts_kept)
        arrays.append(data)
        kept.append(utts_kept)
    if skipped:
        print(
            f"skipped {skipped} utterances whose transcripts are too long for CTC at "
            f"--subsample {model.subsample}",
            file=sys.stderr,
        )
    words = Counter(w for u in kept[0] for w in u.text.split())
    n_words = int(np.median([len(u.text.split()) for u in kept[0]]))
    baseline = " ".join([words.most_common(1)[0][0]] * max(1, n_words))
    extra = {
        "utterances": kept[2],
        "baseline": baseline,
        "skipped": skipped,
        "train_key": jax.random.key(cfg["seed"] + 1),
    }
    return Prepared(model, model.loss, arrays[0], arrays[1], arrays[2], extra)


def _arrays(utts, fcfg: FeatureConfig, model: SpeechModel):
    """``(feats, lengths, labels, label_lengths)`` of the utterances CTC can align."""
    if not utts:
        raise ValueError("the speech corpus has an empty split.")
    feats, lengths = utterance_features([u.samples for u in utts], fcfg)
    labels = [encode_transcript(u.text, where=u.id) for u in utts]
    ok = [
        ctc_min_frames(lab) <= model.steps(int(n)) for lab, n in zip(labels, lengths, strict=True)
    ]
    keep = np.flatnonzero(ok)
    if len(keep) == 0:
        raise ValueError("every utterance's transcript is too long for CTC; lower --subsample.")
    width = max(len(labels[i]) for i in keep)
    lab = np.zeros((len(keep), width), np.int32)
    for row, i in enumerate(keep):
        lab[row, : len(labels[i])] = labels[i]
    lab_len = np.array([len(labels[i]) for i in keep], np.int32)
    data = (feats[keep], lengths[keep], lab, lab_len)
    return data, [utts[i] for i in keep]


@functools.lru_cache(maxsize=8)
def _logits_fn(model: SpeechModel):
    """One jitted forward pass per model config, shared by every decode in the process."""
    return jax.jit(lambda p, x, n: model.apply(p, x, n)[1])


def decode(model: SpeechModel, params, feats, lengths, beam_width: int = 0, batch: int = 64):
    """Transcripts of ``(U, T, M)`` features: greedy with ``beam_width=0``, else beam search."""
    f = _logits_fn(model)
    texts = []
    for i in range(0, len(feats), batch):
        x, n = jnp.asarray(feats[i : i + batch]), jnp.asarray(lengths[i : i + batch])
        logits, steps = f(params, x, n), np.asarray(model.steps(n))
        if beam_width:
            labs = beam_decode(logits, steps, beam_width)
        else:
            labs = greedy_decode(logits, steps)
        texts += [decode_labels(lab) for lab in labs]
    return texts


def speech_metrics(cfg, prep: Prepared, params):
    """Test CER/WER of greedy and beam decoding, and of the prior baseline."""
    feats, lengths = prep.test[0], prep.test[1]
    refs = [u.text for u in prep.extra["utterances"]]
    greedy = decode(prep.model, params, feats, lengths)
    beam = decode(prep.model, params, feats, lengths, BEAM_WIDTH)
    base = [prep.extra["baseline"]] * len(refs)
    prep.extra.update(greedy=greedy, beam=beam)
    rows = [
        ("metric", "greedy", f"beam {BEAM_WIDTH}", f"baseline {prep.extra['baseline']!r}"),
        ("test CER", cer(refs, greedy), cer(refs, beam), cer(refs, base)),
        ("test WER", wer(refs, greedy), wer(refs, beam), wer(refs, base)),
    ]
    flat = {
        "test_cer": cer(refs, greedy),
        "test_wer": wer(refs, greedy),
        "test_cer_beam": cer(refs, beam),
        "test_wer_beam": wer(refs, beam),
        "test_cer_baseline": cer(refs, base),
        "test_wer_baseline": wer(refs, base),
        "skipped_utterances": prep.extra["skipped"],
    }
    return rows, flat


def describe(cfg, prep: Prepared, n_train: int) -> str:
    m = prep.model
    return (
        f"speech (CTC): features {m.n_mels} log-mels x{m.subsample} stacked, bidirectional "
        f"{cfg['cell'].upper()}({m.hidden_size}) x{m.num_layers} + Dense({m.n_classes}), "
        f"{n_train} training utterances, {cfg['epochs']} epochs, batch {cfg['batch_size']}, "
        f"adam lr {cfg['lr']}"
    )


def plot_alignment(path: Path, prep: Prepared, params, index: int = 0) -> None:
    """One test utterance: its log-mel features, and the CTC posteriors over time."""
    from lstm_jax.cli.report import pyplot

    plt = pyplot()
    feats, lengths = prep.test[0][index : index + 1], prep.test[1][index : index + 1]
    n = int(lengths[0])
    logits = _logits_fn(prep.model)(params, jnp.asarray(feats), jnp.asarray(lengths))
    steps = int(prep.model.steps(n))
    post = np.asarray(jax.nn.softmax(logits[0, :steps], axis=-1))  # (T', K)
    best = np.argmax(post, axis=-1)
    text = decode_labels(greedy_decode(logits, [steps])[0])
    ref = prep.extra["utterances"][index].text
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    sub = prep.model.subsample
    a1.imshow(feats[0, :n].T, origin="lower", aspect="auto", extent=(0, n, 0, feats.shape[2]))
    a1.set(ylabel="mel band", title=f"reference: {ref!r}\ndecoded:   {text!r}")
    used = sorted(set(best.tolist()) | {0})
    names = ["blank" if k == 0 else repr(ALPHABET[k - 1]) for k in used]
    a2.imshow(
        post[:, used].T,
        origin="lower",
        aspect="auto",
        extent=(0, steps * sub, -0.5, len(used) - 0.5),
        cmap="Greys",
    )
    a2.set_yticks(range(len(used)), names)
    a2.set(xlabel="frame (10 ms)", ylabel="CTC posterior")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_model(path_text: str):
    """``(cfg, model, params)`` of a speech run directory or checkpoint, without its data."""
    from lstm_jax.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_info
    from lstm_jax.cli.commands import CHECKPOINT, make_optimizer
    from lstm_jax.training.fit import checkpoint_template

    path = Path(path_text)
    path = path / CHECKPOINT if path.is_dir() else path
    cfg, _ = read_checkpoint_info(path)
    if cfg.get("task") != "speech":
        raise ValueError(
            f"{path} holds a {cfg.get('task')!r} model; transcribe needs a speech one."
        )
    f = FeatureConfig(**cfg["features"])
    model = SpeechModel(
        f.n_mels, len(ALPHABET) + 1, cfg["hidden"], cfg["layers"], cfg["subsample"], cfg["cell"]
    )
    like = checkpoint_template(init_params(model, 0), make_optimizer(cfg, 1))
    try:
        tree = load_checkpoint(path, like).tree
    except CheckpointError as e:
        raise CheckpointError(f"{e} (was the file written by another version?)") from None
    return cfg, model, tree["best_params"]


def transcribe(args) -> None:
    """Prints one transcript a line, in the order of ``args.files``; with ``args.timing``,
    each file's audio length and decoding time (the first includes compilation) on stderr."""
    cfg, model, params = load_model(args.checkpoint)
    fcfg = FeatureConfig(**cfg["features"])
    audio = [read_audio(f, fcfg.sample_rate, mono=args.mono).samples for f in args.files]
    for name, samples in zip(args.files, audio, strict=True):
        t0 = time.perf_counter()
        # whole seconds of padding: files of similar lengths share one compiled model
        feats, lengths = utterance_features([samples], fcfg, pad_to=fcfg.sample_rate)
        print(decode(model, params, feats, lengths, args.beam)[0], flush=True)
        if args.timing:
            took = time.perf_counter() - t0
            heard = len(samples) / fcfg.sample_rate
            print(f"{name}: {heard:.2f} s of audio in {took:.3f} s", file=sys.stderr)
