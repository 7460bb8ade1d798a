"""`asr export`: the ONNX graph equals the PyTorch model (padded batches included), the streaming step graph
equals the offline encoder chunk by chunk, int8 and TorchScript exports run, and bad requests fail in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.cli import main
from asr.data.tokenizer import CharTokenizer
from asr.model.features import FeatureConfig, LogMel
from asr.model.file import LoadedModel, load_model, save_model
from asr.model.network import ASRModel, ModelDimensions

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from asr.model import export  # noqa: E402


def random_model(
    cell: str = "lstm", bidirectional: bool = True, subsampling: int = 3, seed: int = 0, lookahead: int = 0
) -> LoadedModel:
    torch.manual_seed(seed)
    tokenizer = CharTokenizer()
    dims = ModelDimensions(
        vocab_size=len(tokenizer),
        cell=cell,
        hidden_size=24,
        num_layers=2,
        bidirectional=bidirectional,
        subsampling=subsampling,
        conv_channels=4,
        lookahead_frames=lookahead,
    )
    model = ASRModel(dims, FeatureConfig(n_mels=40)).eval()
    if lookahead:
        with torch.no_grad():  # a look-ahead that mixes the future in, not the identity it starts as
            model.encoder.lookahead.weight.normal_()
    return LoadedModel(model, tokenizer, {})


def padded_noise(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lengths)
    audio = 0.1 * torch.randn(len(lengths), max(lengths), generator=g)
    return audio * (torch.arange(audio.shape[1])[None] < lens[:, None]), lens


def assert_close_within_lengths(a: np.ndarray, b: torch.Tensor, lengths: torch.Tensor, tol: float = 1e-4) -> None:
    for i, n in enumerate(lengths.tolist()):
        assert np.abs(a[i, :n] - b[i, :n].numpy()).max() < tol


def test_dft_log_mel_equals_torch_stft():
    config = FeatureConfig(n_mels=40, win_ms=25.0, n_fft=512)  # a 400-sample window centred in 512
    mel = LogMel(config)
    audio, lengths = padded_noise([16000, 7001, 400])
    dft = export.DFTLogMel(mel)
    assert torch.allclose(dft.log_mel(audio), mel.log_mel(audio), atol=1e-3)
    (a, la), (b, lb) = dft(audio, lengths), mel(audio, lengths)
    assert torch.equal(la, lb) and torch.allclose(a, b, atol=1e-3)


def test_trained_model_onnx_parity_on_test_set(trained_model, tiny_corpus, tmp_path):
    """The CLI's export of a trained model: log-probs within 1e-4 and the same transcripts, alone and padded."""
    from asr.data.audio import load_audio
    from asr.data.manifest import read_manifest
    from asr.decoding.greedy import greedy_decode

    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(trained_model / "model.pt"), "-o", str(out)]) == 0
    assert not export.step_path(out).exists()  # bidirectional: no streaming graph
    loaded = load_model(trained_model / "model.pt")
    onnx_model = export.OnnxModel(out)
    assert onnx_model.tokenizer.alphabet == loaded.tokenizer.alphabet
    audios = [
        torch.from_numpy(load_audio(u.audio_filepath, 16000))
        for u in read_manifest(tiny_corpus["test"]) + read_manifest(tiny_corpus["dev"])
    ]
    batches = [[a] for a in audios] + [audios, audios[::-1][:3]]  # singles, then padded mixed lengths
    for batch in batches:
        lengths = torch.tensor([a.shape[0] for a in batch])
        padded = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)
        with torch.no_grad():
            ref, ref_lens = loaded.model(padded, lengths)
        log_probs, out_lens = onnx_model(padded.numpy(), lengths.numpy())
        assert out_lens.tolist() == ref_lens.tolist()
        assert_close_within_lengths(log_probs, ref, ref_lens)
        assert greedy_decode(
            torch.from_numpy(log_probs), torch.from_numpy(out_lens), loaded.tokenizer
        ) == greedy_decode(ref, ref_lens, loaded.tokenizer)


@pytest.mark.parametrize(
    "cell,subsampling,lookahead",
    [("lstm", 3, 0), ("gru", 4, 0), ("rnn", 2, 0), ("lstm", 1, 0), ("lstm", 3, 4), ("gru", 2, 1), ("rnn", 1, 2)],
)
def test_encoder_step_streams_like_offline(cell, subsampling, lookahead, tmp_path):
    loaded = random_model(cell, bidirectional=False, subsampling=subsampling, lookahead=lookahead)
    offline_path, step_file = export.export_onnx(loaded, tmp_path / "m.onnx")
    assert step_file == export.step_path(offline_path)
    model = loaded.model
    audio, audio_lens = padded_noise([24000, 15000, 801])
    # The offline graph, with padding, equals the model.
    with torch.no_grad():
        ref, ref_lens = model(audio, audio_lens)
        feats, feat_lens = model.features(audio, audio_lens)
    log_probs, _ = export.OnnxModel(offline_path)(audio.numpy(), audio_lens.numpy())
    assert_close_within_lengths(log_probs, ref, ref_lens)
    # The step graph, chunk by chunk, equals the offline encoder.
    session = ort.InferenceSession(str(step_file))
    meta = {k: export._json_or_text(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    step = export.EncoderStep(model.encoder)
    assert (meta["subsampling"], meta["right_context"]) == (step.subsampling, step.right_context)
    for chunk in (step.subsampling, 5 * step.subsampling):
        n_chunks = -(-feats.shape[1] // chunk)
        frames = torch.nn.functional.pad(feats, (0, 0, 0, n_chunks * chunk + step.right_context - feats.shape[1]))
        states = [s.numpy() for s in step.initial_state(len(audio), model.feature_config.n_mels)]
        outputs = []
        for k in range(n_chunks):
            window = frames[:, k * chunk : (k + 1) * chunk + step.right_context]
            valid = (feat_lens - k * chunk).clamp(0, window.shape[1])
            lp, n, *states = session.run(
                None, {"frames": window.numpy(), "lengths": valid.numpy(), **dict(zip(meta["states"], states))}
            )
            assert lp.shape[1] == chunk // step.subsampling
            outputs.append(lp)
        streamed = np.concatenate(outputs, axis=1)
        assert_close_within_lengths(streamed, ref, ref_lens)


def test_bidirectional_model_has_no_step_graph():
    with pytest.raises(export.ExportError, match="bidirectional"):
        export.EncoderStep(random_model().model.encoder)


def test_int8_export_quantises_encoder_not_features(tmp_path):
    loaded = random_model("lstm", bidirectional=False, subsampling=3)
    paths = export.export_onnx(loaded, tmp_path / "m.int8.onnx", int8=True)
    graph = onnx.load(str(paths[0])).graph
    ops = {(n.op_type, n.name.startswith(export.FEATURE_SCOPE)) for n in graph.node}
    assert ("DynamicQuantizeLSTM", False) in ops and ("MatMulInteger", False) in ops  # recurrent layers, head
    assert ("MatMul", True) in ops and not any(op.endswith("Integer") for op, feature in ops if feature)
    audio, lengths = padded_noise([16000, 9000])
    log_probs, out_lens = export.OnnxModel(paths[0])(audio.numpy(), lengths.numpy())
    with torch.no_grad():
        ref, ref_lens = loaded.model(audio, lengths)
    assert out_lens.tolist() == ref_lens.tolist() and np.isfinite(log_probs).all()
    assert_close_within_lengths(log_probs, ref, ref_lens, tol=0.5)  # int8: close, not equal
    # The quantised step graph runs too: one chunk, states in and out.
    step = export.EncoderStep(loaded.model.encoder)
    session = ort.InferenceSession(str(paths[1]))
    frames = torch.randn(2, 6 + step.right_context, 40)
    states = step.initial_state(2, 40)
    lp, n, *new_states = session.run(
        None,
        {
            "frames": frames.numpy(),
            "lengths": np.array([8, 3]),
            **{k: v.numpy() for k, v in zip(step.state_names(), states)},
        },
    )
    assert lp.shape[1] == 2 and n.tolist() == [2, 1] and np.isfinite(lp).all()
    assert [s.shape for s in new_states] == [tuple(s.shape) for s in states]


def test_torchscript_export_runs_without_asr(tmp_path):
    loaded = random_model("gru", bidirectional=True, subsampling=2)
    path = export.export_torchscript(loaded, tmp_path / "m.torchscript.pt")[0]
    traced = torch.jit.load(str(path))
    audio, lengths = padded_noise([20000, 12345, 3000])  # another batch size and length than traced
    with torch.no_grad():
        ref, ref_lens = loaded.model(audio, lengths)
        log_probs, out_lens = traced(audio, lengths)
    assert torch.equal(out_lens, ref_lens)
    assert_close_within_lengths(log_probs.numpy(), ref, ref_lens, tol=1e-5)


# --------------------------------------------------------------------------------------------- bad requests


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("asr: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("content", [b"just some text\n", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)])
def test_export_of_a_file_that_is_not_a_model(content, tmp_path, capsys):
    bad = tmp_path / "notes.pt"
    bad.write_bytes(content)
    assert main(["export", "--model", str(bad), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "not an asr model file" in _one_line_error(capsys)
    assert not (tmp_path / "x.onnx").exists()


def test_export_unknown_format(tmp_path, capsys):
    model = tmp_path / "model.pt"
    save_model(model, random_model().model, CharTokenizer())
    assert main(["export", "--model", str(model), "--format", "tflite"]) == 2
    assert "unknown export format 'tflite'" in _one_line_error(capsys)


def test_export_int8_without_onnxruntime(tmp_path, capsys, monkeypatch):
    model = tmp_path / "model.pt"
    save_model(model, random_model().model, CharTokenizer())
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if not installed
    assert main(["export", "--model", str(model), "--int8"]) == 2
    assert "--int8 needs the onnxruntime package" in _one_line_error(capsys)


def test_export_to_unwritable_folder(tmp_path, capsys):
    model = tmp_path / "model.pt"
    save_model(model, random_model().model, CharTokenizer())
    assert main(["export", "--model", str(model), "-o", str(model / "sub" / "m.onnx")]) == 2
    assert "output folder" in _one_line_error(capsys)


def test_export_into_a_folder_and_a_read_only_one_is_refused_before_exporting(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx")
    model = tmp_path / "model.pt"
    save_model(model, random_model().model, CharTokenizer())
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", "--model", str(model), "-o", str(out)]) == 0  # into the folder, under the usual name
    assert capsys.readouterr().out.split() == [str(out / "model.onnx")]
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]

    import pathlib

    import asr.model.export as export

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    real_write = pathlib.Path.write_bytes

    def write_bytes(self, data):  # as for a user who is not root (root may write into a 0555 folder)
        if self.parent == ro:
            raise PermissionError(13, "Permission denied")
        return real_write(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: pytest.fail("exported before checking the folder"))
    try:
        assert main(["export", "--model", str(model), "-o", str(ro)]) == 2
        assert _one_line_error(capsys) == f"asr: error: {ro}: output folder is not writable (Permission denied)"
    finally:
        ro.chmod(0o755)
