"""Training faults end in a one-line error naming the cause, or in a correct result; never in a "best" model that
learnt nothing, a truncated checkpoint, a traceback or a schedule that jumps."""

import errno
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from asr.cli import main
from asr.data.manifest import Utterance, read_manifest
from asr.data.tokenizer import CharTokenizer
from asr.model.file import load_model
from asr.training.checkpointing import AtomicCheckpointIO, CheckpointWriteError
from asr.training.config import load_config
from asr.training.ctc_module import CTCModule
from asr.training.datamodule import load_split
from asr.training.run_control import RunControl

pytestmark = pytest.mark.usefixtures("one_thread")


def manifest_with_missing_audio(corpus_manifest, path):
    """The same utterances, every audio path pointing at a file that does not exist."""
    lines = [
        json.dumps(
            {"audio_filepath": str(path.parent / "missing" / f"{i}.wav"), "duration": u.duration, "text": u.text}
        )
        for i, u in enumerate(read_manifest(corpus_manifest))
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def train_cli(train, dev, out, *options, overrides=()):
    return main(
        [
            "train",
            "--train-manifest",
            str(train),
            "--val-manifest",
            str(dev),
            "--output-dir",
            str(out),
            *options,
            *TINY_MODEL,
            *overrides,
        ]
    )


def best_checkpoints(out):
    return sorted(p.name for p in (out / "checkpoints").glob("epoch*.ckpt")) if (out / "checkpoints").exists() else []


def test_all_training_audio_missing_fails_and_keeps_no_best_model(tiny_corpus, tmp_path, capsys):
    train = manifest_with_missing_audio(tiny_corpus["train"], tmp_path / "train.jsonl")
    out = tmp_path / "exp"
    assert train_cli(train, tiny_corpus["dev"], out, "--max-epochs", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("asr: error: epoch 0 trained no step") and "no readable audio" in err
    assert "missing" in err  # names a file
    assert best_checkpoints(out) == [] and not (out / "model.pt").exists()


def test_validation_without_readable_references_fails(tiny_corpus, tmp_path, capsys):
    dev = manifest_with_missing_audio(tiny_corpus["dev"], tmp_path / "dev.jsonl")
    out = tmp_path / "exp"
    assert train_cli(tiny_corpus["train"], dev, out, "--max-epochs", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "validation at epoch 0 had no reference words; 4 utterances could not be read, e.g." in err
    assert "missing" in err and "not 0 %" in err
    assert best_checkpoints(out) == [] and not (out / "model.pt").exists()


def test_a_failed_checkpoint_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)

    def disk_full(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointWriteError, match="last.ckpt: could not write the checkpoint.*intact"):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"global_step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_disk_full_during_training_is_a_one_line_error(tiny_corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "exp"
    assert train_cli(tiny_corpus["train"], tiny_corpus["dev"], out, "--max-epochs", "1") == 0
    before = (out / "checkpoints" / "last.ckpt").read_bytes()

    def disk_full(obj, f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("asr.training.checkpointing.torch.save", disk_full)
    assert train_cli(tiny_corpus["train"], tiny_corpus["dev"], out, "--max-epochs", "2", "--resume") == 2
    assert "could not write the checkpoint (No space left on device)" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == before
    assert not list((out / "checkpoints").glob("*.tmp*"))


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_no_epoch_cap_trains_to_the_time_budget(tiny_corpus, tmp_path, schedule, capsys):
    out = tmp_path / "exp"
    # 0.6 s of budget: it stops after a batch or more, however fast this machine is
    assert (
        train_cli(
            tiny_corpus["train"],
            tiny_corpus["dev"],
            out,
            "--max-epochs",
            "-1",
            "--max-minutes",
            "0.01",
            overrides=[f"optim.schedule={schedule}"],
        )
        == 0
    )
    meta = load_model(out / "model.pt").metadata
    assert meta["total_train_minutes"] >= 0.01
    # the budget is spent: resuming with the same one has nothing to do, and says so
    assert (
        train_cli(
            tiny_corpus["train"], tiny_corpus["dev"], out, "--max-epochs", "-1", "--max-minutes", "0.01", "--resume"
        )
        == 2
    )
    assert "min of the 0.01 min budget; nothing to do" in capsys.readouterr().err


def test_no_epoch_cap_without_a_time_budget_is_a_config_error(tiny_corpus, tmp_path, capsys):
    assert train_cli(tiny_corpus["train"], tiny_corpus["dev"], tmp_path, "--max-epochs", "-1") == 2
    assert "trainer.max_epochs=-1 (no epoch cap) needs a time budget" in capsys.readouterr().err


def fake_trainer(step):
    return SimpleNamespace(global_step=step)


def test_a_larger_budget_on_resume_continues_the_schedule_without_a_jump():
    steps = lambda s: 0.0  # noqa: E731  (no epoch cap: time alone)
    first = RunControl(max_minutes=10)
    first.elapsed = 300.0  # stopped half-way through its 10 minutes
    half = first.schedule_progress(50, steps)
    assert half == pytest.approx(0.5)

    resumed = RunControl(max_minutes=20)
    resumed.load_state_dict(first.state_dict())
    resumed.on_train_start(fake_trainer(50), None)
    try:
        # right after resuming, progress (so the learning rate) is where it was, not 300/1200 = 0.25
        assert resumed.schedule_progress(51, steps) == pytest.approx(0.5)
        resumed.elapsed = 750.0  # half of the remaining 900 s
        assert resumed.schedule_progress(80, steps) == pytest.approx(0.75)
        resumed.elapsed = 1200.0
        assert resumed.schedule_progress(90, steps) == pytest.approx(1.0)
    finally:
        resumed.on_train_end(None, None)


def test_screening_uses_the_fastest_speed_factor(tmp_path):
    tok = CharTokenizer()
    # 20 characters need 20 frames; 0.21 s gives 21 frames at 100 frames/s, but 1.1x faster only 19
    text = "abcdefghijklmnopqrst"
    m = tmp_path / "m.jsonl"
    m.write_text(
        json.dumps({"audio_filepath": "a.wav", "duration": 0.21, "text": text})
        + "\n"
        + json.dumps({"audio_filepath": "b.wav", "duration": 1.0, "text": text})
        + "\n"
    )
    frames = lambda durations: [int(d * 100) for d in durations]  # noqa: E731
    kept, skipped = load_split(m, tok, frames, None)
    assert len(kept) == 2
    kept, skipped = load_split(m, tok, frames, None, fastest_speed=1.1)
    assert [u.audio_filepath.endswith("b.wav") for u in kept] == [True]
    assert "gives only 19 at speed 1.1 (augment.speed_factors)" in str(skipped[0])


def test_an_infeasible_utterance_is_counted_not_silently_zeroed():
    config = load_config(None, TINY_MODEL)
    module = CTCModule.from_config(config)
    log_probs = torch.randn(2, 10, len(module.tokenizer), requires_grad=True).log_softmax(-1)
    targets = torch.tensor([[1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]])
    lengths = torch.tensor([3, 12])  # the second needs 12 + 10 repeats = 22 frames, more than 10
    loss, infeasible = module.ctc_loss(log_probs, torch.tensor([10, 10]), targets, lengths)
    assert infeasible == 1
    alone, _ = module.ctc_loss(log_probs[:1], torch.tensor([10]), targets[:1, :3], lengths[:1])
    assert torch.isfinite(loss) and loss.item() == pytest.approx(alone.item())  # the mean over feasible ones
    loss.backward()


def test_global_statistics_sample_the_whole_training_set(monkeypatch):
    from asr.training import feature_stats as train_module

    # a sorted manifest: the first half one "speaker" (quiet), the second another (loud)
    utts = [Utterance(f"{'quiet' if i < 40 else 'loud'}{i}.wav", 0.1, "a") for i in range(80)]
    monkeypatch.setattr(
        train_module,
        "load_audio",
        lambda path, sr: (
            np.random.default_rng(0).standard_normal(1600).astype(np.float32) * (0.01 if "quiet" in path else 1.0)
        ),
    )
    module = CTCModule.from_config(load_config(None, [*TINY_MODEL, "features.normalize=global"]))
    train_module.estimate_global_stats(module, utts, max_utterances=20, seed=1)
    mean_sampled = module.model.features.global_mean.clone()
    train_module.estimate_global_stats(module, utts, max_utterances=80)
    mean_all = module.model.features.global_mean.clone()
    quiet_loud_gap = 2 * np.log(100)  # log-mel of a 100x quieter signal is lower by log(100^2)
    # the first 20 lines alone would give the quiet speaker's mean, half the gap away from the whole set's
    assert (mean_sampled - mean_all).abs().mean() < quiet_loud_gap / 4


def test_a_batch_with_no_readable_audio_is_skipped_without_touching_the_weights(tiny_corpus, tmp_path):
    import lightning as L

    from asr.training.train import train

    lines = [json.loads(ln) for ln in open(tiny_corpus["train"])]
    for i, d in enumerate(lines):  # every other file missing: with batches of one, every other batch is empty
        d["audio_filepath"] = str(tiny_corpus["train"].parent / d["audio_filepath"]) if i % 2 else f"/missing/{i}.wav"
    manifest = tmp_path / "half.jsonl"
    manifest.write_text("\n".join(json.dumps(d) for d in lines) + "\n")

    class Watch(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.before = {k: v.clone() for k, v in module.state_dict().items()}

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            changed = any(not torch.equal(self.before[k], v) for k, v in module.state_dict().items())
            self.seen.append((module._skip_step, changed))

    watch = Watch()
    config = load_config(None, [*TINY_MODEL, "data.max_batch_seconds=3", "trainer.max_epochs=1"])
    train(config, str(manifest), str(tiny_corpus["dev"]), tmp_path / "exp", callbacks=[watch])
    assert (True, False) in watch.seen and (False, True) in watch.seen
    assert all(skipped != changed for skipped, changed in watch.seen)  # skipped: untouched; trained: updated
    assert load_model(tmp_path / "exp" / "model.pt").metadata["skipped_while_decoding"] == 8


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("asr: error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_training_into_an_existing_run_is_refused_unless_resumed_or_overwritten(
    tiny_corpus, trained_model, tmp_path, capsys
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_model, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert train_cli(tiny_corpus["train"], tiny_corpus["dev"], run, "--max-epochs", "1") == 2
    error = _one_line(capsys)
    assert f"{run}: holds a run already (model.pt, checkpoints, config.yaml, logs" in error
    assert "--resume" in error and "--overwrite" in error
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing touched
    assert train_cli(tiny_corpus["train"], tiny_corpus["dev"], run, "--resume", "--overwrite") == 2
    assert "contradict" in _one_line(capsys)

    (run / "notes.txt").write_text("mine")  # a file the user keeps there survives --overwrite
    assert train_cli(tiny_corpus["train"], tiny_corpus["dev"], run, "--max-epochs", "1", "--overwrite") == 0
    capsys.readouterr()
    new_best = best_checkpoints(run)
    assert len(new_best) == 1 and not any("-v1" in n for n in new_best)  # the old run's were removed, not mixed
    assert (run / "notes.txt").read_text() == "mine"
    assert load_model(run / "model.pt").metadata["epochs"] == 1


def test_output_dirs_and_checkpoints_that_cannot_be_used_are_one_line_errors(
    tiny_corpus, trained_model, tmp_path, capsys
):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, why in ((a_file, "--output-dir is a file"), (a_file / "run", f"lies under {a_file}, which is a file")):
        assert train_cli(tiny_corpus["train"], tiny_corpus["dev"], out, "--max-epochs", "1") == 2
        assert why in _one_line(capsys)

    last = (trained_model / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(last[: len(last) // 2])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"pytorch-lightning_version": "2.6.0", "x": Evil()}, tmp_path / "evil.ckpt")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint at all\n")
    cases = [
        (trained_model / "model.pt", "an asr model file, not a training checkpoint"),
        (tmp_path / "cut.ckpt", "cut.ckpt: checkpoint is truncated"),
        (tmp_path / "evil.ckpt", "evil.ckpt: refused, it cannot be loaded safely"),
        (tmp_path / "notes.ckpt", "notes.ckpt: not an asr checkpoint"),
    ]
    for i, (ckpt, why) in enumerate(cases):
        out = tmp_path / f"resumed{i}"
        rc = train_cli(tiny_corpus["train"], tiny_corpus["dev"], out, "--max-epochs", "2", "--resume-from", str(ckpt))
        assert rc == 2 and why in _one_line(capsys)
        assert "pwned" not in capsys.readouterr().out


def test_a_ddp_rank_other_than_zero_never_takes_rank_zeros_fresh_files_for_an_old_run(tmp_path, monkeypatch):
    """torchrun starts every rank at once: rank 0 may write config.yaml before rank 1 looks at the folder."""
    from asr.errors import UsageError
    from asr.training.run_folder import launch_rank, prepare_output_dir

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("written by rank 0 a moment ago\n")
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launch_rank() == 0
    with pytest.raises(UsageError, match="holds a run already"):
        prepare_output_dir(out, resume=False, overwrite=False)
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.setenv(name, "1")
        assert launch_rank() == 1
        prepare_output_dir(out, resume=False, overwrite=True)  # neither refused nor cleared: rank 0's to judge
        assert (out / "config.yaml").exists()
        monkeypatch.delenv(name)
