"""The acoustic model: log-mel -> optional conv front-end -> stacked (bi)RNN/LSTM/GRU -> optional look-ahead ->
linear -> log-probs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from asr.model.features import FeatureConfig, LogMel, lengths_to_mask

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# Time stride of each conv layer, per overall subsampling factor. 3 exists for character CTC on fast speech:
# 33 frames per second leave room for the blank that CTC needs between doubled letters ("ll" in "ball"), which
# 25 frames per second often do not, at two thirds of the recurrent cost of 50 frames per second. 6 and 8 are for
# word pieces (tokenizer.type: bpe), whose targets are a few times shorter than characters.
TIME_STRIDES = {1: (), 2: (2,), 3: (3, 1), 4: (2, 2), 6: (2, 3), 8: (2, 2, 2)}


@dataclass
class ModelDimensions:
    vocab_size: int
    cell: str = "lstm"  # rnn (Elman, tanh) | lstm | gru
    hidden_size: int = 256
    num_layers: int = 3
    bidirectional: bool = True
    dropout: float = 0.1
    subsampling: int = 2  # time subsampling of the conv front-end: 1 (no front-end), 2, 3, 4, 6 or 8
    conv_channels: int = 32
    # Output frames of future context after the last recurrent layer (DeepSpeech 2's row convolution: each output
    # frame becomes a learned per-channel mix of the current and the next k frames). For forward-only models,
    # which must otherwise emit a letter before hearing the sound after it; a stream waits k frames longer
    # (k * frame_seconds: 30 ms a frame at subsampling 3). 0: none, as every model before this field.
    lookahead_frames: int = 0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"model.cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        if self.subsampling not in TIME_STRIDES:
            raise ValueError(f"model.subsampling must be one of {sorted(TIME_STRIDES)}, got {self.subsampling}")
        if self.num_layers < 1 or self.hidden_size < 1:
            raise ValueError("model.num_layers and model.hidden_size must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.lookahead_frames, bool) or not isinstance(self.lookahead_frames, int):
            raise ValueError(f"model.lookahead_frames must be a whole number of frames, got {self.lookahead_frames!r}")
        if not 0 <= self.lookahead_frames <= 64:
            raise ValueError(f"model.lookahead_frames must be 0 (none) to 64, got {self.lookahead_frames}")


class ConvFrontEnd(nn.Module):
    """DeepSpeech2-style 2-D convolutions, each halving frequency and dividing time by its stride.

    Positions past each utterance's length are zeroed after every layer, so a short utterance gives the same
    output alone as when padded next to a longer one.
    """

    def __init__(self, n_mels: int, channels: int, subsampling: int):
        super().__init__()
        self.time_strides = TIME_STRIDES[subsampling]
        self.convs = nn.ModuleList()
        in_ch, freq = 1, n_mels
        for stride in self.time_strides:
            self.convs.append(nn.Conv2d(in_ch, channels, kernel_size=3, stride=(stride, 2), padding=1))
            in_ch, freq = channels, (freq - 1) // 2 + 1
        self.output_size = in_ch * freq  # n_mels when there is no conv layer

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for stride in self.time_strides:
            lengths = (lengths - 1) // stride + 1
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.convs:
            return x, lengths
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for conv, stride in zip(self.convs, self.time_strides):
            x = torch.relu(conv(x))
            lengths = (lengths - 1) // stride + 1
            x = x * lengths_to_mask(lengths, x.shape[2])[:, None, :, None].to(x.dtype)
        b, c, t, f = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f), lengths

    def layer_without_time_padding(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Conv layer ``i`` and its ReLU on (B, C, T, F) input, padded in frequency but not in time.

        A stream supplies each output's neighbouring frames itself (the previous chunk's last frame, or the zero
        frame that ``forward``'s padding puts at either end), so every output equals the offline one.
        """
        conv = self.convs[i]
        return torch.relu(F.conv2d(x, conv.weight, conv.bias, stride=conv.stride, padding=(0, conv.padding[1])))


def reverse_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) time indices that reverse each sequence within its own length and leave the padding in place."""
    t = torch.arange(max_len, device=lengths.device)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def reverse_padded(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index[:, :, None].expand_as(x))


class RecurrentLayer(nn.Module):
    """One (bi)directional recurrent layer that padding cannot reach.

    The forward cell reads the padded batch as is: padding comes after each sequence's last frame, so it can only
    touch outputs past the length. The backward cell reads each sequence reversed *within its own length*, so
    for it too the padding comes last. Both run on the plain (unpacked) batch, which keeps the fast fused kernels
    (cuDNN on GPUs, oneDNN on CPUs); on 2 CPU cores this trains 2.7x faster than packed sequences.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, bidirectional: bool):
        super().__init__()
        kwargs = dict(input_size=input_size, hidden_size=hidden_size, batch_first=True)
        if cell == "rnn":
            kwargs["nonlinearity"] = "tanh"
        self.forward_cell = CELLS[cell](**kwargs)
        self.backward_cell = CELLS[cell](**kwargs) if bidirectional else None

    def forward(self, x: torch.Tensor, reverse: torch.Tensor | None) -> torch.Tensor:
        out, _ = self.forward_cell(x)
        if self.backward_cell is None:
            return out
        back, _ = self.backward_cell(reverse_padded(x, reverse))
        return torch.cat([out, reverse_padded(back, reverse)], dim=-1)

    def forward_step(
        self, x: torch.Tensor, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """The forward cell alone on (B, T, I) from ``state`` (None: zeros), returning its output and final state
        (h, or (h, c) for an LSTM): a stream carries that state from one chunk to the next."""
        return self.forward_cell(x, state)


class Lookahead(nn.Module):
    """DeepSpeech 2's row convolution: output t = sum over j = 0..k of ``weight[:, j]`` * input t + j, per channel.

    It gives a forward-only model k frames of future context at the cost of k frames of latency, for
    (k + 1) x channels weights and as many multiply-adds a frame: far cheaper than a backward layer, and a
    stream can run it exactly by holding back k frames (:meth:`step`). Frames past each utterance's length count
    as zeros (the recurrent output there is masked first), so padding cannot reach an output within the length.
    It starts as the identity (weight 1 on the current frame, 0 on the future ones): a model begins training as
    a model without look-ahead would, and learns how much of the future to use.
    """

    def __init__(self, channels: int, frames: int):
        super().__init__()
        self.frames = frames
        weight = torch.zeros(channels, frames + 1)
        weight[:, 0] = 1.0
        self.weight = nn.Parameter(weight)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n + k, C) consecutive frames -> (B, n, C): the outputs of the first n, which have their k future
        frames in ``x`` (zeros past the end of the utterance)."""
        y = F.conv1d(x.transpose(1, 2), self.weight[:, None, :], groups=self.weight.shape[0])
        return y.transpose(1, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = x * lengths_to_mask(lengths, x.shape[1])[:, :, None].to(x.dtype)
        return self.step(F.pad(x, (0, 0, 0, self.frames)))


class Encoder(nn.Module):
    """Features (B, T, F) -> log-probabilities (B, T', vocab); no output within a length depends on padding."""

    def __init__(self, dims: ModelDimensions, n_mels: int):
        super().__init__()
        self.dims = dims
        self.frontend = ConvFrontEnd(n_mels, dims.conv_channels, dims.subsampling)
        directions = 2 if dims.bidirectional else 1
        self.layers = nn.ModuleList(
            RecurrentLayer(
                dims.cell,
                self.frontend.output_size if i == 0 else dims.hidden_size * directions,
                dims.hidden_size,
                dims.bidirectional,
            )
            for i in range(dims.num_layers)
        )
        self.lookahead = (
            Lookahead(dims.hidden_size * directions, dims.lookahead_frames) if dims.lookahead_frames else None
        )
        self.dropout = nn.Dropout(dims.dropout)
        self.head = nn.Linear(dims.hidden_size * directions, dims.vocab_size)
        self._init_weights()

    def _init_weights(self) -> None:
        if self.dims.cell == "lstm":
            # Forget-gate bias 1: the long-standing fix for LSTMs that forget too early in training.
            h = self.dims.hidden_size
            for name, p in self.layers.named_parameters():
                if "bias_ih" in name:
                    with torch.no_grad():
                        p[h : 2 * h].fill_(1.0)

    def output_lengths(self, feature_lengths: torch.Tensor) -> torch.Tensor:
        return self.frontend.output_lengths(feature_lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = self.frontend(feats, lengths)
        lengths = lengths.clamp(min=1)
        reverse = reverse_index(lengths, x.shape[1]) if self.dims.bidirectional else None
        for i, layer in enumerate(self.layers):
            x = layer(self.dropout(x) if i > 0 else x, reverse)
        if self.lookahead is not None:
            x = self.lookahead(x, lengths)
        logits = self.head(self.dropout(x))
        return torch.log_softmax(logits.float(), dim=-1), lengths


class ASRModel(nn.Module):
    """Audio in, CTC log-probabilities out; features are part of the model."""

    def __init__(self, dims: ModelDimensions, features: FeatureConfig, compute_filterbank: bool = True):
        super().__init__()
        self.dims = dims
        self.feature_config = features
        self.features = LogMel(features, compute_filterbank)
        self.encoder = Encoder(dims, features.n_mels)

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @property
    def frame_samples(self) -> int:
        """Audio samples per output (log-prob) frame: the feature hop times the front-end's time subsampling."""
        return self.feature_config.hop_length * self.dims.subsampling

    @property
    def frame_seconds(self) -> float:
        return frame_seconds(self.feature_config, self.dims)

    @property
    def lookahead_seconds(self) -> float:
        """Audio a stream waits for beyond what the model without look-ahead waits for: the look-ahead's frames."""
        return self.dims.lookahead_frames * self.frame_seconds

    @property
    def device(self) -> torch.device:
        return self.encoder.head.weight.device

    def output_lengths(self, audio_lengths: torch.Tensor) -> torch.Tensor:
        """Number of CTC frames the model emits for audio of these lengths (samples)."""
        return self.encoder.output_lengths(self.features.output_lengths(audio_lengths))

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, feat_lens = self.features(audio, audio_lengths)
        return self.encoder(feats, feat_lens)


def frame_seconds(features: FeatureConfig, dims: ModelDimensions) -> float:
    """Seconds of audio per output (log-prob) frame: the feature hop times the encoder's time subsampling.

    The one definition: the model, the model file's metadata and the transcriber's word times all use it."""
    return features.hop_length * dims.subsampling / features.sample_rate
