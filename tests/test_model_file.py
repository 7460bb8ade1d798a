"""Model files across releases: older versions migrate, newer fields are ignored with a warning, bad files fail.

The previous-version file is written here by ``save_model_v1`` (exactly what the version-1 ``save_model`` wrote),
so no binary fixture is committed.
"""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from asr import __version__
from asr.data.tokenizer import CharTokenizer
from asr.inference.transcribe import transcribe
from asr.model.features import FeatureConfig
from asr.model.file import FORMAT_VERSION, MIGRATIONS, ModelFileError, UnknownFieldsWarning, load_model, save_model
from asr.model.network import ASRModel, ModelDimensions


def save_model_v1(path, model, tokenizer, metadata=None):
    """Format version 1, as asr 0.1.0 (commit 7b895c9) wrote it."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    obj = {
        "format": "asr-rnn-ctc",
        "format_version": 1,
        "asr_version": __version__,
        "features": dataclasses.asdict(model.feature_config),
        "model": dataclasses.asdict(model.dims),
        "tokenizer": tokenizer.to_dict(),
        "metadata": metadata or {},
        "state_dict": state,
    }
    torch.save(obj, path)


def tiny_model(subsampling=2):
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    dims = ModelDimensions(
        vocab_size=len(tokenizer), hidden_size=8, num_layers=1, conv_channels=2, subsampling=subsampling
    )
    return ASRModel(dims, FeatureConfig()).eval(), tokenizer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("model_files")
    model, tokenizer = tiny_model(subsampling=3)
    save_model_v1(d / "v1.pt", model, tokenizer, {"epochs": 3})
    save_model(d / "v2.pt", model, tokenizer, {"epochs": 3})
    rng = np.random.default_rng(0)
    for i, seconds in enumerate((0.7, 1.3)):
        sf.write(d / f"{i}.wav", 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
    return d


def test_v1_file_loads_and_transcribes_like_its_v2_counterpart(files):
    old, new = load_model(files / "v1.pt"), load_model(files / "v2.pt")
    assert (old.format_version, new.format_version) == (1, FORMAT_VERSION)
    assert old.created is None and new.created.endswith("+00:00")
    assert old.metadata == new.metadata == {"epochs": 3}
    assert old.frame_seconds == new.frame_seconds == pytest.approx(0.03)
    assert torch.load(files / "v2.pt", weights_only=True)["frame_seconds"] == pytest.approx(0.03)
    audio = [files / "0.wav", files / "1.wav"]
    assert [t.text for t in transcribe(old, audio)] == [t.text for t in transcribe(new, audio)]
    x = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 9000])
    with torch.inference_mode():
        (a, la), (b, lb) = old.model(x, lengths), new.model(x, lengths)
    assert torch.equal(a, b) and torch.equal(la, lb)
    # the file itself is never rewritten
    assert torch.load(files / "v1.pt", weights_only=True)["format_version"] == 1


def test_every_older_version_has_a_migration():
    assert sorted(MIGRATIONS) == list(range(1, FORMAT_VERSION))


def test_unknown_fields_from_a_newer_release_are_ignored_with_a_warning(files, tmp_path):
    obj = torch.load(files / "v2.pt", weights_only=True)
    obj["asr_version"] = "9.0.0"
    obj["signature"] = "abc"
    obj["features"]["dither"] = 1e-5
    obj["model"]["layer_norm"] = False
    obj["tokenizer"]["lowercase"] = True
    torch.save(obj, tmp_path / "newer.pt")
    with pytest.warns(UnknownFieldsWarning) as record:
        loaded = load_model(tmp_path / "newer.pt")
    messages = " | ".join(str(w.message) for w in record)
    for name in ("signature", "dither", "layer_norm", "lowercase"):
        assert name in messages
    assert "written by asr 9.0.0" in messages
    reference = load_model(files / "v2.pt")
    x = torch.randn(1, 8000)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x, torch.tensor([8000]))[0], reference.model(x, torch.tensor([8000]))[0])


def test_a_newer_format_version_asks_to_upgrade(files, tmp_path):
    obj = torch.load(files / "v2.pt", weights_only=True)
    obj["format_version"] = FORMAT_VERSION + 1
    obj["asr_version"] = "9.0.0"
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(
        ModelFileError,
        match=rf"future.pt: model file format version {FORMAT_VERSION + 1} was "
        r"written by asr 9.0.0, newer than .*upgrade asr",
    ):
        load_model(tmp_path / "future.pt")


def _edit(files, tmp_path, change):
    obj = torch.load(files / "v2.pt", weights_only=True)
    change(obj)
    torch.save(obj, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


def _wrong_shape(obj):
    key = next(k for k in obj["state_dict"] if k.endswith("head.weight"))
    obj["state_dict"][key] = torch.zeros(3, 3)


def _not_a_version(obj):
    obj["format_version"] = "2"


def _inconsistent_frame_seconds(obj):
    obj["frame_seconds"] = 0.02


def _missing_tokenizer(obj):
    del obj["tokenizer"]


def _bad_v1(obj):
    obj["format_version"] = 1
    obj["model"] = {"cell": "lstm"}  # no vocab_size: the migration itself cannot run


@pytest.mark.parametrize(
    "change,reason",
    [
        (_wrong_shape, "damaged or inconsistent .*size mismatch for encoder.head.weight"),
        (_not_a_version, "damaged .*format version '2' is not a version number"),
        (_inconsistent_frame_seconds, "damaged or inconsistent .*frame_seconds 0.02"),
        (_missing_tokenizer, "damaged or inconsistent .*missing field 'tokenizer'"),
        (_bad_v1, "format version 1 is damaged: cannot migrate"),
    ],
)
def test_edited_files_are_damaged(files, tmp_path, change, reason):
    with pytest.raises(ModelFileError, match=f"edited.pt: model file (is )?{reason}"):
        load_model(_edit(files, tmp_path, change))


def test_files_that_are_not_models(files, tmp_path):
    with pytest.raises(ModelFileError, match="absent.pt: model file not found"):
        load_model(tmp_path / "absent.pt")
    data = (files / "v2.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated.pt: model file is truncated or damaged"):
        load_model(tmp_path / "truncated.pt")
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelFileError, match="garbage.pt: not an asr model file"):
        load_model(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match=r"other.pt: not an asr model file$"):
        load_model(tmp_path / "other.pt")
    torch.save({"pytorch-lightning_version": "2.6.6", "state_dict": {}}, tmp_path / "last.ckpt")
    with pytest.raises(ModelFileError, match="last.ckpt: not an asr model file .this is a Lightning training"):
        load_model(tmp_path / "last.ckpt")


@pytest.mark.parametrize("content", [b"hello\n", b"RIFF\x24\x00\x00\x00WAVEfmt ", bytes(range(256))])
def test_arbitrary_bytes_are_a_model_file_error_not_a_traceback(tmp_path, content):
    path = tmp_path / "not_a_model.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not an asr model file"):
        load_model(path)


def test_files_from_before_the_lookahead_field_load_without_one(files, tmp_path):
    obj = torch.load(files / "v2.pt", weights_only=True)
    del obj["model"]["lookahead_frames"]  # as every file written before the field
    torch.save(obj, tmp_path / "before.pt")
    loaded = load_model(tmp_path / "before.pt")
    assert loaded.model.dims.lookahead_frames == 0 and loaded.model.encoder.lookahead is None


def test_a_lookahead_model_round_trips(tmp_path):
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    dims = ModelDimensions(
        vocab_size=len(tokenizer), hidden_size=8, num_layers=1, conv_channels=2, bidirectional=False, lookahead_frames=2
    )
    model = ASRModel(dims, FeatureConfig()).eval()
    with torch.no_grad():
        model.encoder.lookahead.weight.normal_()
    save_model(tmp_path / "la.pt", model, tokenizer)
    assert torch.load(tmp_path / "la.pt", weights_only=True)["model"]["lookahead_frames"] == 2
    loaded = load_model(tmp_path / "la.pt")
    assert loaded.model.dims.lookahead_frames == 2
    x = torch.randn(1, 8000)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x, torch.tensor([8000]))[0], model(x, torch.tensor([8000]))[0])


def _short_alphabet(obj):
    obj["tokenizer"]["alphabet"] = obj["tokenizer"]["alphabet"][:10]  # 11 symbols for 29 outputs


def _long_alphabet(obj):
    obj["tokenizer"]["alphabet"] += "0123"  # 33 symbols: decoding would never emit the last 4


def _features(**changes):
    def change(obj):
        obj["features"].update(changes)

    return change


@pytest.mark.parametrize(
    "change, reason",
    [
        (_short_alphabet, "the tokenizer has 11 symbols .blank included. but the output layer has 29"),
        (_long_alphabet, "the tokenizer has 33 symbols .blank included. but the output layer has 29"),
        (_features(sample_rate=0), "features.sample_rate 0: not a usable sample rate"),
        (_features(sample_rate=-16000), "features.sample_rate -16000: not a usable sample rate"),
        (_features(sample_rate=float("nan")), "features.sample_rate nan: not a finite whole number"),
        (_features(hop_ms=0.0), "features.hop_ms 0.0: the hop must be at least one sample"),
        (_features(n_mels=0), "features.n_fft 512 / n_mels 0: must be at least 2 / 1"),
        (_features(f_max=12000.0), "features.f_min 0.0 / f_max 12000.0: need 0 <= f_min < f_max <= 8000"),
    ],
)
def test_an_alphabet_or_features_that_cannot_be_the_models_are_refused_at_load(files, tmp_path, change, reason):
    """Were an IndexError at decode time (alphabet) and a ZeroDivisionError (sample_rate 0), far from the file."""
    path = _edit(files, tmp_path, change)
    with pytest.raises(ModelFileError, match=f"edited.pt: model file is damaged or inconsistent .{reason}"):
        load_model(path)
    from asr.cli import main

    assert main(["transcribe", "--model", str(path), str(files / "0.wav")]) == 2


def test_a_cut_download_and_a_malicious_pickle_read_differently(files, tmp_path):
    import os

    data = (files / "v2.pt").read_bytes()
    for fraction in (0.01, 0.3, 0.5, 0.9, 0.999):  # cut anywhere: every one says so
        (tmp_path / "cut.pt").write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(ModelFileError, match=r"cut.pt: model file is truncated or damaged \(\d+ bytes; "):
            load_model(tmp_path / "cut.pt")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"format": "asr-rnn-ctc", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError) as e:
        load_model(tmp_path / "evil.pt")
    message = str(e.value)
    assert "refused, it cannot be loaded safely" in message and "truncated" not in message
    # torch's explanation is kept whole (it was cut at 200 characters, before the part that names the code)
    assert "GLOBAL" in message and "system" in message and message.endswith(")") and len(message.splitlines()) == 1
    assert not (tmp_path / "pwned").exists()
