"""Exporting a trained model for deployment without this package: ONNX (optionally int8) and TorchScript.

The exported offline graph is the whole model, audio to log-probs: it takes ``audio`` (float32, batch x samples,
zero past each length) and ``lengths`` (int64 samples) and returns ``log_probs`` (batch x frames x vocab) and
``lengths`` (int64 frames), with the log-mel features inside the graph as they are inside :class:`ASRModel`.

Why a wrapper and which exporter (measured with torch 2.13, onnx 1.23, onnxruntime 1.32): ONNX has no complex
tensors, and the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) stops at
``torch.stft(return_complex=True)``; the dynamo exporter needs the extra ``onnxscript`` package, took 53 s for a
small model and produced a graph that failed in onnxruntime at another batch size. So the export traces
:class:`ExportableModel`, whose log-mel computes the STFT as a strided conv1d over a fixed windowed-DFT basis
(real-valued ops only; equal to ``torch.stft`` to float tolerance, tested), with the TorchScript-based exporter
at a pinned opset. Everything else (the padding-proof reversal of the backward cells, length masks) is the
model's own code, traced with dynamic batch and time axes.

A unidirectional model also gets a second graph, ``encoder_step`` (``<name>.step.onnx``), that carries the conv
front-end's context and every layer's recurrent state from one chunk of feature frames to the next, so the
model can stream; see :class:`EncoderStep` for its contract (a look-ahead layer, ``model.lookahead_frames``,
only lengthens its right context).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asr.data.tokenizer import tokenizer_from_dict
from asr.errors import ExportError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)
from asr.model.features import LogMel, lengths_to_mask
from asr.model.file import LoadedModel
from asr.model.network import ASRModel, Encoder

OPSET = 17  # LSTM/GRU/RNN, Conv, GatherElements all exist long before; 17 is what onnxruntime >= 1.13 runs
FORMATS = ("onnx", "torchscript")
METADATA_FORMAT = "asr-rnn-ctc-onnx"
# Feature nodes stay float32 in the int8 export: quantising the DFT basis or the mel filterbank costs accuracy
# for no speed (they are a small fraction of the compute).
FEATURE_SCOPE = "/features/"


# ----------------------------------------------------------------------------------------------- the graphs


def dft_basis(n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """(2 * n_freq, 1, n_fft) conv1d weights: windowed cosines then negated sines, as ``torch.stft`` computes.

    ``torch.stft`` centres a window shorter than ``n_fft`` inside the frame; so does this.
    """
    n_freq = n_fft // 2 + 1
    left = (n_fft - window.numel()) // 2
    w = torch.zeros(n_fft, dtype=torch.float64)
    w[left : left + window.numel()] = window.double()
    k = torch.arange(n_freq, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * ((k * n) % n_fft) / n_fft  # the modulo keeps the float64 angles exact
    basis = torch.cat([torch.cos(angle) * w, -torch.sin(angle) * w], dim=0)
    return basis.float().unsqueeze(1)


class DFTLogMel(LogMel):
    """:class:`LogMel` with the STFT as a conv1d over a DFT basis: same features, only real-valued ops."""

    def __init__(self, source: LogMel):
        super().__init__(source.config, compute_filterbank=False)
        self.load_state_dict(source.state_dict())
        self.to(source.mel_fb.device)
        self.register_buffer("dft_basis", dft_basis(source.config.n_fft, self.window), persistent=False)

    def log_mel(self, audio: torch.Tensor, mel_fb: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        pad = c.n_fft // 2  # torch.stft(center=True, pad_mode="constant")
        x = F.pad(audio.float().unsqueeze(1), (pad, pad))
        spec = F.conv1d(x, self.dft_basis, stride=c.hop_length)  # (B, 2 * n_freq, T)
        n_freq = self.mel_fb.shape[0]
        power = spec[:, :n_freq].square() + spec[:, n_freq:].square()
        mel = torch.matmul(power.transpose(1, 2), self.mel_fb if mel_fb is None else mel_fb)
        return torch.log(mel + 1e-6)


class ExportableModel(nn.Module):
    """:meth:`ASRModel.forward` with :class:`DFTLogMel`; shares the encoder's weights, changes nothing in it."""

    def __init__(self, model: ASRModel):
        super().__init__()
        self.features = DFTLogMel(model.features)
        self.encoder = model.encoder

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, feat_lens = self.features(audio, lengths)
        return self.encoder(feats, feat_lens)


def right_context(time_strides: Sequence[int], extra: int = 0) -> int:
    """Feature frames past a chunk that the conv front-end needs to finish the chunk's last output frame and
    ``extra`` output frames after it (a look-ahead layer's).

    A kernel-3 conv with time stride ``s`` reads one frame back and one ahead of ``s * t``: for ``s >= 2`` the
    frame ahead lies inside a chunk whose length is a multiple of ``s``; a stride-1 layer (subsampling 3's
    second conv) needs one frame of its input beyond the chunk, which the layer below must then produce.
    """
    r = extra
    for s in reversed(time_strides):
        r = r + 1 if s == 1 else max(0, s * r - s + 2)
    return r


class EncoderStep(nn.Module):
    """One chunk of a unidirectional encoder, carrying every state the offline encoder keeps implicitly.

    Inputs: ``frames`` (B, N, n_mels) normalised log-mel frames (the encoder's input, as :class:`LogMel`
    returns them), N = ``chunk + right_context`` where ``chunk`` is a multiple of the subsampling factor and the
    last ``right_context`` frames are the start of the next chunk (sent again with it; zeros past the end);
    ``lengths`` (B,) int64: how many of the N frames are real (N until the utterance ends);
    one ``conv_cache_i`` (B, C_i, 1, F_i) per conv layer: the last frame of that layer's input in the
    previous chunk (zeros at the start); ``h`` (num_layers, B, H), and for LSTM ``c``: the recurrent states
    (zeros at the start).
    Outputs: ``log_probs`` (B, chunk / subsampling, vocab), ``lengths`` (B,) of those that are real, then the
    new caches and states in the same order. States after an utterance's end are meaningless.
    Run over consecutive chunks, the concatenated log-probs equal the offline encoder's (tested).

    A look-ahead layer of k frames needs the recurrent outputs of the k frames after the chunk: the right
    context grows by the feature frames that make them, the recurrent layers run over those k frames from the
    chunk's final state (which is what is carried on, not the state after them), and the next chunk computes
    them again, now as its own. So the contract stays the same, at k frames of extra recurrent work a chunk.
    """

    def __init__(self, encoder: Encoder):
        super().__init__()
        if encoder.dims.bidirectional:
            raise ExportError("a bidirectional model cannot stream: its backward cells read the whole utterance")
        self.encoder = encoder
        self.time_strides = tuple(encoder.frontend.time_strides)
        self.future = encoder.dims.lookahead_frames  # recurrent output frames past the chunk the look-ahead reads
        # Lookahead of each conv layer's input, from the top down (see right_context).
        self.lookahead = [right_context(self.time_strides[i:], self.future) for i in range(len(self.time_strides))]
        self.right_context = right_context(self.time_strides, self.future)
        self.subsampling = math.prod(self.time_strides)
        self.is_lstm = encoder.dims.cell == "lstm"

    def initial_state(self, batch: int, n_mels: int) -> list[torch.Tensor]:
        """Zero caches and states for ``batch`` streams, in the graph's input order."""
        states, freq = [], n_mels
        for conv in self.encoder.frontend.convs:
            states.append(torch.zeros(batch, conv.in_channels, 1, freq))
            freq = (freq - 1) // 2 + 1
        dims = self.encoder.dims
        h = torch.zeros(dims.num_layers, batch, dims.hidden_size)
        states.append(h)
        if self.is_lstm:
            states.append(torch.zeros_like(h))
        return states

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n_convs = len(self.time_strides)
        caches, rnn_states = states[:n_convs], states[n_convs:]
        valid = lengths
        x = frames * lengths_to_mask(valid, frames.shape[1]).unsqueeze(-1).to(frames.dtype)
        new_caches = []
        if n_convs:
            x = x.unsqueeze(1)  # (B, 1, N, F)
            for conv, stride, cache, r in zip(self.encoder.frontend.convs, self.time_strides, caches, self.lookahead):
                buffer = torch.cat([cache, x], dim=2)
                new_caches.append(buffer[:, :, -(r + 1) : -r] if r else buffer[:, :, -1:])
                x = torch.relu(F.conv2d(buffer, conv.weight, conv.bias, stride=(stride, 2), padding=(0, 1)))
                valid = torch.div(valid + (stride - 1), stride, rounding_mode="floor")
                x = x * lengths_to_mask(valid, x.shape[2])[:, None, :, None].to(x.dtype)
            b, c, t, f = x.shape
            x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)
        new_h, new_c = [], []
        k = self.future
        for i, layer in enumerate(self.encoder.layers):
            state = (rnn_states[0][i : i + 1], rnn_states[1][i : i + 1]) if self.is_lstm else rnn_states[0][i : i + 1]
            out, state = layer.forward_cell(x[:, :-k] if k else x, state)  # the chunk: its final state is carried
            if k:  # the look-ahead's frames past the chunk, from that state; computed again by the next chunk
                out = torch.cat([out, layer.forward_cell(x[:, -k:], state)[0]], dim=1)
            x = out
            if self.is_lstm:
                new_h.append(state[0])
                new_c.append(state[1])
            else:
                new_h.append(state)
        if k:  # zeros past the end, as offline
            x = self.encoder.lookahead.step(x * lengths_to_mask(valid, x.shape[1]).unsqueeze(-1).to(x.dtype))
        log_probs = torch.log_softmax(self.encoder.head(x).float(), dim=-1)
        out_lengths = lengths_to_mask(valid, x.shape[1]).sum(1)  # real frames, the right context left out
        outputs = [log_probs, out_lengths, *new_caches, torch.cat(new_h, 0)]
        if self.is_lstm:
            outputs.append(torch.cat(new_c, 0))
        return tuple(outputs)

    def state_names(self) -> list[str]:
        names = [f"conv_cache_{i}" for i in range(len(self.time_strides))] + ["h"]
        return names + (["c"] if self.is_lstm else [])


# ----------------------------------------------------------------------------------------------- exporting


def _metadata(loaded: LoadedModel, graph: str, **extra: Any) -> dict[str, str]:
    model = loaded.model
    meta = {
        "format": METADATA_FORMAT,
        "graph": graph,
        "opset": OPSET,
        "tokenizer": loaded.tokenizer.to_dict(),
        "features": dataclasses.asdict(model.feature_config),
        "model": dataclasses.asdict(model.dims),
        "sample_rate": model.sample_rate,
        **extra,
    }
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def _write_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    metadata: dict[str, str],
) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    graph = onnx.load(str(path))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


def _quantize(src: Path, dst: Path) -> None:
    """onnxruntime dynamic int8 quantisation of the LSTM, MatMul and Gemm nodes outside the features."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = [n.name for n in onnx.load(str(src)).graph.node if n.name.startswith(FEATURE_SCOPE)]
    with _quiet_logging():  # onnxruntime's quantiser logs advice and per-tensor notes through the root logger
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["LSTM", "MatMul", "Gemm"],
            nodes_to_exclude=excluded,
        )


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def step_path(path: str | os.PathLike) -> Path:
    """Where the streaming graph of the offline graph at ``path`` goes: ``model.onnx`` -> ``model.step.onnx``."""
    path = Path(path)
    return path.with_name(path.stem + ".step" + path.suffix)


@torch.no_grad()
def export_onnx(loaded: LoadedModel, path: str | os.PathLike, int8: bool = False) -> list[Path]:
    """Write the offline graph to ``path`` and, for a unidirectional model, the step graph beside it."""
    _require("onnx", "ONNX export")
    if int8:
        _require("onnxruntime", "--int8")
    path = Path(path)
    model = loaded.model.to("cpu").eval()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "offline.onnx"
        audio = torch.randn(2, model.sample_rate)
        lengths = torch.tensor([model.sample_rate, model.sample_rate * 2 // 3])
        _write_onnx(
            ExportableModel(model).eval(),
            (audio, lengths),
            raw,
            ["audio", "lengths"],
            ["log_probs", "out_lengths"],
            {
                "audio": {0: "batch", 1: "samples"},
                "lengths": {0: "batch"},
                "log_probs": {0: "batch", 1: "frames"},
                "out_lengths": {0: "batch"},
            },
            _metadata(loaded, "offline", int8=int8),
        )
        written.append(_finish(raw, path, int8))
        if not model.dims.bidirectional:
            step = EncoderStep(model.encoder).eval()
            n_mels = model.feature_config.n_mels
            frames = torch.randn(2, 4 * step.subsampling + step.right_context, n_mels)
            states = step.initial_state(2, n_mels)
            names = step.state_names()
            axes: dict[str, dict[int, str]] = {
                "frames": {0: "batch", 1: "frames"},
                "lengths": {0: "batch"},
                "log_probs": {0: "batch", 1: "out_frames"},
                "out_lengths": {0: "batch"},
            }
            for name in names:
                batch_axis = 1 if name in ("h", "c") else 0
                axes[name] = {batch_axis: "batch"}
                axes[f"new_{name}"] = {batch_axis: "batch"}
            raw_step = Path(tmp) / "step.onnx"
            _write_onnx(
                step,
                (frames, torch.tensor([frames.shape[1], 5]), *states),
                raw_step,
                ["frames", "lengths", *names],
                ["log_probs", "out_lengths", *(f"new_{n}" for n in names)],
                axes,
                _metadata(
                    loaded,
                    "encoder_step",
                    int8=int8,
                    right_context=step.right_context,
                    subsampling=step.subsampling,
                    states=names,
                ),
            )
            written.append(_finish(raw_step, step_path(path), int8))
    return written


def _finish(raw: Path, dst: Path, int8: bool) -> Path:
    if int8:
        _quantize(raw, dst)
    else:
        shutil.move(raw, dst)
    return dst


@torch.no_grad()
def export_torchscript(loaded: LoadedModel, path: str | os.PathLike, int8: bool = False) -> list[Path]:
    """Trace the model itself (TorchScript has complex tensors, so ``torch.stft`` stays) to ``path``.

    ``int8`` applies PyTorch's dynamic quantisation to the recurrent and linear layers first.
    """
    model = loaded.model.to("cpu").eval()
    if int8:
        model = quantize_torch(model)
    audio = torch.randn(2, model.sample_rate)
    lengths = torch.tensor([model.sample_rate, model.sample_rate * 2 // 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (audio, lengths), check_trace=False)
    extra = {"asr_export.json": json.dumps(_metadata(loaded, "offline", int8=int8))}
    torch.jit.save(traced, str(path), _extra_files=extra)
    return [Path(path)]


def quantize_torch(model: ASRModel) -> ASRModel:
    """PyTorch dynamic int8 quantisation of the LSTM/GRU and linear layers (an Elman RNN stays float)."""
    import copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates quantised tensors; still works
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {nn.LSTM, nn.GRU, nn.Linear}, dtype=torch.qint8
        )


def _require(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ExportError(f"{what} needs the {module} package: pip install 'asr-rnn-ctc[export]'")


def default_output(model_path: str | os.PathLike, fmt: str, int8: bool) -> Path:
    stem = Path(model_path).with_suffix("")
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}[fmt]
    return stem.with_name(stem.name + (".int8" if int8 else "") + suffix)


def export_model(
    model_path: str | os.PathLike, fmt: str = "onnx", output: str | os.PathLike | None = None, int8: bool = False
) -> list[Path]:
    """Export the model file at ``model_path``; returns the files written. Errors are one-line ExportError or
    ModelFileError, raised before any work where they can be."""
    from asr.model.file import load_model

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require("onnx", "ONNX export")
        if int8:
            _require("onnxruntime", "--int8")
    out = Path(output) if output is not None else default_output(model_path, fmt, int8)
    if output is not None and (out.is_dir() or str(output).endswith(("/", os.sep))):
        out = out / default_output(model_path, fmt, int8).name  # -o DIR: into that folder, under the usual name
    _check_writable(out.parent)  # before any work: a folder that cannot be written fails now, not after export
    if out.exists() and not out.is_file():
        raise ExportError(f"{out}: exists and is not a file")
    try:
        loaded = load_model(model_path, "cpu")
    except (KeyError, IndexError, EOFError, UnicodeDecodeError, pickle.UnpicklingError) as e:
        # A file that is not a pickle at all (a wav, a text file) can fail inside the unpickler this way.
        raise ExportError(f"{model_path}: not an asr model file (cannot be read: {type(e).__name__})") from None
    if fmt == "onnx":
        return export_onnx(loaded, out, int8)
    return export_torchscript(loaded, out, int8)


def _check_writable(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder}: the output folder is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{folder}: cannot create the output folder ({e.strerror or e})") from None
    probe = folder / f".asr-export-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ExportError(f"{folder}: output folder is not writable ({e.strerror or e})") from None


# ----------------------------------------------------------------------------------------------- running


class OnnxModel:
    """An exported offline graph in onnxruntime, with the tokenizer and settings stored in its metadata."""

    def __init__(self, path: str | os.PathLike, num_threads: int = 2):
        _require("onnxruntime", "running an ONNX export")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # Idle worker threads would otherwise spin for a while after each run, taking the cores from whatever
        # runs next in this process (PyTorch, the decoder) or beside it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != METADATA_FORMAT:
            raise ExportError(f"{path}: not an ONNX file written by `asr export`")
        self.metadata = {k: _json_or_text(v) for k, v in meta.items()}
        self.tokenizer = tokenizer_from_dict(self.metadata["tokenizer"])
        self.sample_rate = int(self.metadata["sample_rate"])

    def __call__(self, audio: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Audio (B, S) float32 zero-padded and lengths (B,) in samples -> log-probs (B, T, V), lengths (B,)."""
        log_probs, out_lengths = self.session.run(
            None,
            {"audio": np.ascontiguousarray(audio, dtype=np.float32), "lengths": np.asarray(lengths, dtype=np.int64)},
        )
        return log_probs, out_lengths


def _json_or_text(value: str) -> Any:
    """Our metadata values are JSON except for plain strings; other tools (the quantiser) add their own."""
    try:
        return json.loads(value)
    except ValueError:
        return value
