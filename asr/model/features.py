"""Log-mel features as an ``nn.Module``.

The feature extractor lives inside the model (its settings and mel filterbank are in the state dict), runs on
the model's device in float32, and is used by training and inference alike, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORMALIZE_MODES = ("per_utterance", "global", "none")


@dataclass
class FeatureConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    # per_utterance: mean/variance per mel bin over each utterance's own frames (robust to gain and channel).
    # global: one mean/variance per bin, estimated from training data before training starts.
    normalize: str = "per_utterance"

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"features.normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if self.win_length > self.n_fft:
            raise ValueError(f"window ({self.win_length} samples) is longer than n_fft ({self.n_fft})")


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class LogMel(nn.Module):
    """Audio (B, S) at ``sample_rate`` -> normalised log-mel (B, T, n_mels), zero on padded frames."""

    def __init__(self, config: FeatureConfig, compute_filterbank: bool = True):
        """``compute_filterbank=False`` leaves the filterbank empty for a state dict to fill: loading a saved
        model then never imports librosa (seconds of start-up for `asr transcribe`)."""
        super().__init__()
        self.config = config
        n_freq = config.n_fft // 2 + 1
        fb = torch.zeros(n_freq, config.n_mels)
        if compute_filterbank:
            import librosa

            fb = (
                torch.from_numpy(
                    librosa.filters.mel(
                        sr=config.sample_rate,
                        n_fft=config.n_fft,
                        n_mels=config.n_mels,
                        fmin=config.f_min,
                        fmax=config.f_max,
                    )
                )
                .float()
                .T.contiguous()
            )
        self.register_buffer("mel_fb", fb, persistent=True)  # (n_freq, n_mels)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        self.register_buffer("global_mean", torch.zeros(config.n_mels), persistent=True)
        self.register_buffer("global_std", torch.ones(config.n_mels), persistent=True)

    @property
    def n_mels(self) -> int:
        return self.config.n_mels

    def output_lengths(self, audio_lengths: torch.Tensor) -> torch.Tensor:
        return audio_lengths // self.config.hop_length + 1

    def log_mel(self, audio: torch.Tensor, mel_fb: torch.Tensor | None = None, center: bool = True) -> torch.Tensor:
        """Un-normalised log-mel power (B, T, n_mels), computed in float32 whatever autocast says.

        ``mel_fb`` replaces the model's filterbank with one per utterance, (B, n_freq, n_mels): training-time
        frequency warping (:class:`asr.training.augment.VTLP`) passes it; inference never does. ``center=False`` frames
        audio that already carries its context (``n_fft // 2`` samples either side of each frame's centre):
        :mod:`asr.inference.streaming` passes the zeros that ``center=True`` would add, then each chunk with its neighbours.
        """
        c = self.config
        with torch.autocast(device_type=audio.device.type, enabled=False):
            spec = torch.stft(
                audio.float(),
                n_fft=c.n_fft,
                hop_length=c.hop_length,
                win_length=c.win_length,
                window=self.window,
                center=center,
                pad_mode="constant",
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # (B, n_freq, T)
            mel = torch.matmul(power.transpose(1, 2), self.mel_fb if mel_fb is None else mel_fb.float())
            return torch.log(mel + 1e-6)

    def forward(
        self,
        audio: torch.Tensor,
        audio_lengths: torch.Tensor,
        mel_fb: torch.Tensor | None = None,
        stats_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``stats_mask`` (B, T) bool limits the per-utterance mean/variance to those frames (long-form
        transcription passes the speech frames, so the pauses around a segment do not shift its statistics);
        a row without any such frame falls back to all its frames."""
        # Samples past each length must be zero, or the last frames of a short utterance would hear its padding.
        audio = audio * lengths_to_mask(audio_lengths, audio.shape[1]).to(audio.dtype)
        feats = self.log_mel(audio, mel_fb)
        lengths = self.output_lengths(audio_lengths).clamp(max=feats.shape[1])
        mask = lengths_to_mask(lengths, feats.shape[1]).unsqueeze(-1)  # (B, T, 1)
        mode = self.config.normalize
        if mode == "per_utterance":
            stats = mask
            if stats_mask is not None:
                stats = mask & stats_mask[:, : feats.shape[1], None]
                stats = torch.where(stats.any(dim=1, keepdim=True), stats, mask)
            n = stats.sum(1, keepdim=True).clamp(min=1).to(feats.dtype)
            mean = (feats * stats).sum(1, keepdim=True) / n
            var = (((feats - mean) * stats) ** 2).sum(1, keepdim=True) / n
            feats = (feats - mean) / torch.sqrt(var + 1e-5)
        elif mode == "global":
            feats = (feats - self.global_mean) / self.global_std
        return feats.masked_fill(~mask, 0.0), lengths

    def normalize_frames(self, feats: torch.Tensor) -> torch.Tensor:
        """``forward``'s normalisation of (B, T, n_mels) log-mel frames for modes that need no other frames
        (``global``, ``none``): what a stream can apply chunk by chunk. ``per_utterance`` needs the whole
        utterance's statistics, so it raises ValueError."""
        mode = self.config.normalize
        if mode == "global":
            return (feats - self.global_mean) / self.global_std
        if mode == "none":
            return feats
        raise ValueError(f"features.normalize: {mode} needs the whole utterance; frames alone cannot be normalised")

    @torch.no_grad()
    def set_global_stats(self, sum_: torch.Tensor, sum_sq: torch.Tensor, count: int) -> None:
        """Store global mean/std from accumulated sums of un-normalised log-mel frames."""
        mean = sum_ / count
        var = (sum_sq / count - mean**2).clamp(min=1e-8)
        self.global_mean.copy_(mean)
        self.global_std.copy_(var.sqrt())
