"""The bundled spoken-digit corpus, the folder loader, and ``lstm-jax train --task speech`` /
``lstm-jax transcribe`` end to end on a small slice."""

import json

import numpy as np
import pytest
import soundfile as sf

from lstm_jax.audio import FeatureConfig, resample_audio, write_wav
from lstm_jax.cli import main
from lstm_jax.cli.speech import SpeechModel, _arrays
from lstm_jax.cli.tasks import prepare
from lstm_jax.data import load_speech, load_speech_folder
from lstm_jax.data.speech import SPEECH_DIR

DIGITS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


@pytest.fixture(scope="module")
def corpus():
    return load_speech()


def test_bundled_corpus_is_compact_and_split_by_voice(corpus):
    size = sum(p.stat().st_size for p in SPEECH_DIR.iterdir())
    assert size < 8e6
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (720, 100, 140)
    voices = [{u.speaker for u in split} for split in corpus[:3]]
    assert [len(v) for v in voices] == [72, 10, 14]
    assert not (voices[0] & voices[1] or voices[0] & voices[2] or voices[1] & voices[2])
    for u in corpus.train[:50] + corpus.test[:50]:
        words = u.text.split()
        assert 1 <= len(words) <= 7 and set(words) <= DIGITS
        assert u.samples.dtype == np.float32 and u.sample_rate == 8000
        assert 0.05 < np.abs(u.samples).max() <= 1.0 and len(u.samples) > 2000


def _folder(tmp_path, corpus, rows, header="file,text,speaker"):
    for name, _, _ in rows:
        x = resample_audio(corpus.test[len(name) % 5].samples, 8000, 16000)  # 16 kHz files
        write_wav(tmp_path / name, x, 16000)
    lines = [header] + [",".join(r) for r in rows]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_folder_loader_splits_by_speaker_and_resamples(tmp_path, corpus):
    rows = [(f"{s}{i}.wav", "One two", s) for s in "abcdefghij" for i in range(2)]
    c = load_speech_folder(_folder(tmp_path, corpus, rows))
    assert (len(c.train), len(c.val), len(c.test)) == (16, 2, 2)
    assert c.sample_rate == 8000 and c.test[0].text == "one two"
    assert len({u.speaker for u in c.test} | {u.speaker for u in c.val}) == 2
    assert not {u.speaker for u in c.test} & {u.speaker for u in c.train}


def test_folder_loader_errors_name_the_file(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="no manifest"):
        load_speech_folder(tmp_path)
    _folder(tmp_path, corpus, [("a.wav", "one", "x"), ("b.wav", "route 66", "y")])
    with pytest.raises(ValueError, match=r"manifest.csv line 3 \(b.wav\): the transcript 'rou"):
        load_speech_folder(tmp_path)
    (tmp_path / "manifest.csv").write_text("path,words\na.wav,one\n")
    with pytest.raises(ValueError, match=r"columns file,text \(missing \['file', 'text'\]\)"):
        load_speech_folder(tmp_path)
    (tmp_path / "manifest.csv").write_text("file,text\nmissing.wav,one\n")
    with pytest.raises(FileNotFoundError, match="missing.wav: no such file"):
        load_speech_folder(tmp_path)


def test_the_task_reads_a_folder_corpus(tmp_path, corpus):
    rows = [(f"{s}{i}.wav", "one two", s) for s in "abcdefghij" for i in range(2)]
    cfg = {"task": "speech", "data": str(_folder(tmp_path, corpus, rows)), "hidden": 8}
    cfg.update(layers=1, cell="lstm", seed=0)
    prep = prepare(cfg)
    feats, lengths, labels, label_lengths = prep.train
    assert feats.shape[0] == 16 and feats.shape[2] == 40 and cfg["subsample"] == 3
    assert label_lengths.tolist() == [7] * 16 and prep.extra["baseline"] == "one one"


def test_transcripts_too_long_for_ctc_are_skipped_and_counted(corpus):
    by_words = sorted(corpus.test, key=lambda u: len(u.text))
    utts = by_words[:4] + by_words[-4:]  # the shortest and the longest transcripts
    model = SpeechModel(subsample=12)  # 0.12 s per step: long transcripts cannot align
    (feats, lengths, labels, label_lengths), kept = _arrays(utts, FeatureConfig(), model)
    assert 0 < len(kept) < len(utts) and len(feats) == len(kept)
    assert np.all(label_lengths <= model.steps(lengths))


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech")
    argv = ["train", "--task", "speech", "--no-progress", "--epochs", "1", "--hidden", "8"]
    argv += ["--layers", "1", "--n-examples", "8", "--batch-size", "8", "--out", str(out)]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_train_speech_writes_metrics_baseline_and_pictures(speech_run):
    names = {p.name for p in speech_run.iterdir()}
    assert {"checkpoint.msgpack", "metrics.json", "loss.png", "alignment.png"} <= names
    test = json.loads((speech_run / "metrics.json").read_text())["test"]
    assert {"test_cer", "test_wer", "test_cer_beam", "test_cer_baseline"} <= set(test)
    assert 0 < test["test_cer_baseline"] < 1.5 and test["test_cer"] >= 0


@pytest.mark.slow
def test_transcribe_prints_one_line_per_file(speech_run, corpus, tmp_path, capsys):
    files = []
    for i in range(2):
        files.append(tmp_path / f"u{i}.wav")
        write_wav(files[-1], corpus.test[i].samples, 8000)
    capsys.readouterr()
    assert main(["transcribe", str(speech_run), *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(set(t) <= set(" 'abcdefghijklmnopqrstuvwxyz") for t in lines)
    assert main(["transcribe", str(speech_run), "--beam", "4", str(files[0])]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.slow
def test_transcribe_refuses_bad_files(speech_run, tmp_path, capsys):
    (tmp_path / "notes.wav").write_text("hello")
    sf.write(tmp_path / "st.wav", np.full((800, 2), 0.1, np.float32), 8000)
    write_wav(tmp_path / "low.wav", np.full(400, 0.1, np.float32), 4000)
    write_wav(tmp_path / "quiet.wav", np.zeros(800, np.float32), 8000)
    for name, msg in [
        ("notes.wav", "notes.wav is not a WAV or FLAC file"),
        ("st.wav", "st.wav has 2 channels"),
        ("low.wav", "low.wav is sampled at 4000 Hz, below the 8000 Hz needed"),
        ("quiet.wav", "quiet.wav is silent"),
    ]:
        assert main(["transcribe", str(speech_run), str(tmp_path / name)]) == 1
        assert msg in capsys.readouterr().err
