"""Training-time augmentation that runs on the model's device, on whole padded batches.

Augmenting in the DataLoader workers would tie the cost to the CPU count; here each module is one batched
tensor program on the GPU. All are ``nn.Module``s that act only in ``.training`` mode and return their
input unchanged (or, for VTLP, no filterbank) in eval mode, so they can sit inside the model (before or after
the feature extractor) and switch off with ``model.eval()``.

Determinism: every random parameter (masks, factors, SNRs, noise offsets) is drawn from a ``torch.Generator`` on
the CPU and only then moved to the batch's device, so a given seed gives the same augmentation on CPU and GPU,
and the model's own random streams (dropout) are left alone. Pass a seed, a CPU generator, or ``None`` to seed
from torch's global generator (``lightning.seed_everything`` then governs it). Under DDP give each rank its own
seed (e.g. ``seed + rank``) unless identical parameters on every rank are acceptable.

Shapes follow the project's conventions: audio ``(B, S)`` float32 with ``audio_lengths`` ``(B,)`` int64;
features ``(B, T, F)`` with ``feature_lengths`` ``(B,)``; padded positions are zero and stay zero.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
from torch import nn

from asr.model.features import lengths_to_mask

GeneratorLike = torch.Generator | int | None


def make_generator(generator: GeneratorLike) -> torch.Generator:
    """A CPU generator from a seed, an existing CPU generator, or (``None``) torch's global random state."""
    if isinstance(generator, torch.Generator):
        if generator.device.type != "cpu":
            raise ValueError("augmentation generators must live on the CPU (parameters are drawn there)")
        return generator
    if generator is None:
        generator = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(int(generator))


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al., 2019) with time masks scaled to each utterance.

    Each utterance gets ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks`` spans whose
    width is drawn up to ``time_width``: a float is a fraction of that utterance's valid length (adaptive, as in
    NeMo: short utterances are not wiped out, long ones still get masks wide enough to matter), an int a number
    of frames. Masks never reach into the padding. The mask value is 0, the mean of normalised features.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 10,
        time_width: float | int = 0.05,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        if freq_masks < 0 or time_masks < 0 or freq_width < 0 or time_width < 0:
            raise ValueError("mask counts and widths must be non-negative")
        if isinstance(time_width, float) and time_width > 1:
            raise ValueError(f"a float time_width is a fraction of the length and must be <= 1, got {time_width}")
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width
        self.generator = make_generator(generator)

    def forward(self, features: torch.Tensor, feature_lengths: torch.Tensor) -> torch.Tensor:
        """Masked copy of ``features`` (B, T, F); the input is not modified."""
        if not self.training or features.numel() == 0:
            return features
        b, t, f = features.shape
        g, dev = self.generator, features.device
        # Uniforms are drawn on the CPU; scaling them by the lengths happens on the device, so the lengths
        # never have to be copied back to the host.
        u = torch.rand(4, b, max(self.freq_masks, self.time_masks), generator=g, dtype=torch.float64).to(dev)
        lengths = feature_lengths.to(dev).clamp(0, t).double()[:, None]
        fw = (u[0, :, : self.freq_masks] * (min(self.freq_width, f) + 1)).long()
        f0 = (u[1, :, : self.freq_masks] * (f - fw + 1)).long()
        if isinstance(self.time_width, float):
            max_tw = (lengths * self.time_width).floor()
        else:
            max_tw = lengths.clamp(max=self.time_width)
        tw = (u[2, :, : self.time_masks] * (max_tw + 1)).long()
        t0 = (u[3, :, : self.time_masks] * (lengths - tw + 1)).long()

        bins = torch.arange(f, device=dev)
        frames = torch.arange(t, device=dev)
        freq_mask = ((bins >= f0[..., None]) & (bins < (f0 + fw)[..., None])).any(1)  # (B, F)
        time_mask = ((frames >= t0[..., None]) & (frames < (t0 + tw)[..., None])).any(1)  # (B, T)
        mask = (time_mask[:, :, None] | freq_mask[:, None, :]) & lengths_to_mask(feature_lengths.to(dev), t)[:, :, None]
        return features.masked_fill(mask, 0.0)


def sinc_resample_kernel(
    orig: int,
    new: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, int]:
    """Polyphase windowed-sinc (Hann) filter bank for resampling by ``new/orig`` (coprime integers).

    Returns the kernels ``(new, 1, 2 * width + orig)`` for a strided ``conv1d`` and the padding ``width``. The
    cutoff sits just below the lower Nyquist rate (``rolloff``), so upsampling does not image and downsampling
    does not alias; this is the same filter design as torchaudio's ``resample``.
    """
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx[None, :]) * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernel = sinc * window * (base / orig)
    return kernel[:, None, :].to(device=device, dtype=dtype), width


def resample(audio: torch.Tensor, orig: int, new: int, kernel: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """Resample rows of ``audio`` (B, S) by ``new/orig``; the output has ``ceil(S * new / orig)`` samples."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    if orig == new:
        return audio
    weights, width = kernel or sinc_resample_kernel(orig, new, dtype=audio.dtype, device=audio.device)
    b, s = audio.shape
    x = nn.functional.pad(audio[:, None, :], (width, width + orig))
    y = nn.functional.conv1d(x, weights, stride=orig)  # (B, new, frames): phase-major
    y = y.transpose(1, 2).reshape(b, -1)
    return y[:, : math.ceil(s * new / orig)]


class SpeedPerturb(nn.Module):
    """Speed perturbation (Ko et al., 2015): each utterance played ``f`` times faster, pitch and tempo together.

    A factor ``f`` is drawn from ``factors``; the audio is resampled by ``1/f`` with a band-limited sinc filter
    (``f`` as a ratio of small integers, e.g. 0.9 = 9/10), so it becomes ``1/f`` as long and every frequency is
    multiplied by ``f``. By default one factor is drawn per *batch*: the batch was bucketed by duration, and
    factors drawn per utterance would stretch some of its members by 22 % more than others, adding ~10 % padding
    (measured on LibriSpeech-like batches). ``per_utterance=True`` draws one per utterance instead; utterances
    sharing a factor are then resampled together, one convolution each.
    """

    def __init__(
        self,
        factors: Sequence[float] = (0.9, 1.0, 1.1),
        generator: GeneratorLike = None,
        max_denominator: int = 100,
        per_utterance: bool = False,
    ) -> None:
        super().__init__()
        if not factors or any(f <= 0 for f in factors):
            raise ValueError(f"speed factors must be positive, got {factors}")
        self.factors = tuple(float(f) for f in factors)
        # f = orig / new: resampling from `orig` to `new` samples per unit time makes the audio 1/f as long.
        self._ratios = [Fraction(f).limit_denominator(max_denominator) for f in self.factors]
        self.generator = make_generator(generator)
        self.per_utterance = per_utterance
        self._kernels: dict[tuple[int, int, torch.dtype, torch.device], tuple[torch.Tensor, int]] = {}

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New padded audio (B, S') and lengths (B,); the input is not modified."""
        if not self.training or audio.shape[0] == 0:
            return audio, audio_lengths
        # Resampling is signal processing, not learning: always float32, whatever autocast is doing.
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self._perturb(audio.float(), audio_lengths)

    def _perturb(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, dev = audio.shape[0], audio.device
        choice = torch.randint(len(self._ratios), (b if self.per_utterance else 1,), generator=self.generator)
        choice = choice.expand(b)
        lengths = audio_lengths.detach().to("cpu", torch.int64)
        new_lengths = lengths.clone()
        for i, r in enumerate(self._ratios):
            rows = (choice == i).nonzero().flatten()
            new_lengths[rows] = (lengths[rows] * r.denominator + r.numerator - 1) // r.numerator
        out = audio.new_zeros(b, int(new_lengths.max()) if b else 0)
        for i, r in enumerate(self._ratios):
            rows = (choice == i).nonzero().flatten()
            if len(rows) == 0:
                continue
            longest = int(lengths[rows].max())
            x = audio[rows.to(dev), :longest]
            if r.numerator != r.denominator:
                key = (r.numerator, r.denominator, audio.dtype, dev)
                if key not in self._kernels:
                    self._kernels[key] = sinc_resample_kernel(r.numerator, r.denominator, dtype=audio.dtype, device=dev)
                x = resample(x, r.numerator, r.denominator, self._kernels[key])
            out[rows.to(dev), : x.shape[1]] = x
        # The filter rings a few samples past each utterance's end into the padding; padding must stay zero.
        out = out * lengths_to_mask(new_lengths.to(dev), out.shape[1])
        return out, new_lengths.to(device=audio_lengths.device, dtype=audio_lengths.dtype)


def warp_frequencies(freqs: torch.Tensor, alpha: torch.Tensor, nyquist: float, boundary_hz: float) -> torch.Tensor:
    """Piecewise-linear VTLP warp (Jaitly & Hinton, 2013): ``f -> alpha * f`` up to a knee, then a straight line
    that maps the Nyquist frequency onto itself, so no energy leaves the band. ``alpha`` (B, 1), ``freqs`` (K,)."""
    knee_out = boundary_hz * alpha.clamp(max=1.0)  # where the knee lands after warping
    knee = knee_out / alpha
    upper = nyquist - (nyquist - knee_out) / (nyquist - knee) * (nyquist - freqs)
    return torch.where(freqs <= knee, alpha * freqs, upper)


class VTLP(nn.Module):
    """Vocal tract length perturbation: each utterance's frequency axis stretched by its own factor.

    A longer or shorter vocal tract moves every formant by about the same factor; that, more than pitch, is
    what tells one speaker from another, and unseen speakers are what a small corpus generalises worst to. Speed
    perturbation also moves formants, but only together with tempo and for a whole batch; VTLP draws a factor
    per utterance uniformly from ``factors`` = (lo, hi) and leaves the timing alone. It is applied where it costs
    nothing: the mel filterbank is evaluated at warped frequencies, one (n_freq, n_mels) matrix per utterance,
    so ``alpha > 1`` reads the energy at ``f`` as if it were at ``alpha * f`` (formants move up). Frequencies
    above ``boundary_hz`` are compressed or stretched so that the Nyquist frequency stays in place.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        factors: Sequence[float] = (0.9, 1.1),
        boundary_hz: float = 4800.0,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        if len(factors) != 2 or not 0 < factors[0] <= factors[1]:
            raise ValueError(f"VTLP factors must be a range (lo, hi) with 0 < lo <= hi, got {list(factors)}")
        nyquist = sample_rate / 2
        if not 0 < boundary_hz * max(factors[1], 1.0) < nyquist:
            raise ValueError(
                f"VTLP boundary {boundary_hz} Hz times the largest factor must stay below the Nyquist "
                f"frequency {nyquist} Hz"
            )
        self.factors = (float(factors[0]), float(factors[1]))
        self.nyquist = nyquist
        self.boundary_hz = float(boundary_hz)
        self.bin_hz = sample_rate / n_fft
        self.generator = make_generator(generator)

    def forward(self, mel_fb: torch.Tensor, batch_size: int) -> torch.Tensor | None:
        """Per-utterance filterbanks (B, n_freq, n_mels) warped from ``mel_fb`` (n_freq, n_mels); None in eval
        mode, meaning "use the model's own"."""
        if not self.training or batch_size == 0:
            return None
        lo, hi = self.factors
        alpha = lo + (hi - lo) * torch.rand(batch_size, 1, generator=self.generator, dtype=torch.float64)
        n_freq = mel_fb.shape[0]
        freqs = torch.arange(n_freq, dtype=torch.float64) * self.bin_hz
        # Position, in FFT bins, at which each filter is read for each bin: linear interpolation between bins is
        # exact for triangular filters except at their corners.
        pos = (warp_frequencies(freqs, alpha, self.nyquist, self.boundary_hz) / self.bin_hz).clamp(0, n_freq - 1)
        left = pos.floor().long().clamp(max=n_freq - 2)
        frac = (pos - left).to(mel_fb.device, mel_fb.dtype).unsqueeze(-1)
        left = left.to(mel_fb.device)
        return mel_fb[left] * (1 - frac) + mel_fb[left + 1] * frac


class AddNoise(nn.Module):
    """Additive background noise at a random signal-to-noise ratio, per utterance.

    With probability ``prob`` an utterance gets a random noise clip, cropped at a random offset and looped to the
    utterance's length, scaled so that the SNR over the utterance's valid samples is uniform in ``snr_db``.
    ``noise`` is a manifest path (clips decoded once with :func:`asr.data.audio.load_audio` at ``sample_rate``) or a
    list of 1-D clips. All clips are kept concatenated in one buffer that follows the module to its device
    (not saved in checkpoints): an hour of noise takes 230 MB of device memory.
    """

    def __init__(
        self,
        noise: str | os.PathLike | Sequence[torch.Tensor | np.ndarray],
        snr_db: tuple[float, float] = (0.0, 20.0),
        prob: float = 0.5,
        sample_rate: int = 16000,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if snr_db[0] > snr_db[1]:
            raise ValueError(f"snr_db must be (low, high), got {snr_db}")
        clips = _load_noise(noise, sample_rate)
        lens = torch.tensor([len(c) for c in clips], dtype=torch.int64)
        self.register_buffer("bank", torch.cat(clips), persistent=False)
        self.register_buffer("clip_starts", torch.cumsum(lens, 0) - lens, persistent=False)
        self.register_buffer("clip_lengths", lens, persistent=False)
        self._clip_lengths_cpu = lens  # offsets are drawn on the CPU without a device round trip
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))
        self.prob = prob
        self.generator = make_generator(generator)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        """Noisy copy of ``audio`` (B, S); lengths are unchanged and padding stays zero."""
        if not self.training or audio.numel() == 0:
            return audio
        b, s = audio.shape
        g, dev = self.generator, audio.device
        apply = torch.rand(b, generator=g) < self.prob
        clip = torch.randint(len(self.clip_lengths), (b,), generator=g)
        clip_len = self._clip_lengths_cpu[clip]
        offset = (torch.rand(b, generator=g) * clip_len).long()
        snr = self.snr_db[0] + torch.rand(b, generator=g, dtype=torch.float64) * (self.snr_db[1] - self.snr_db[0])

        clip, clip_len, offset = clip.to(dev), clip_len.to(dev), offset.to(dev)
        pos = (offset[:, None] + torch.arange(s, device=dev)[None, :]) % clip_len[:, None]
        valid = lengths_to_mask(audio_lengths.to(dev), s)
        noise = self.bank[self.clip_starts[clip][:, None] + pos] * valid
        n = audio_lengths.to(dev).clamp_min(1).double()
        p_signal = (audio.double() ** 2 * valid).sum(1) / n
        p_noise = (noise.double() ** 2).sum(1) / n
        gain = torch.sqrt(p_signal / (p_noise.clamp_min(1e-20) * 10 ** (snr.to(dev) / 10)))
        gain = torch.where(apply.to(dev), gain, torch.zeros_like(gain))
        return audio + (gain[:, None] * noise).to(audio.dtype)


def _load_noise(noise: str | os.PathLike | Sequence[torch.Tensor | np.ndarray], sample_rate: int) -> list[torch.Tensor]:
    if isinstance(noise, (str, os.PathLike)):
        from asr.data.audio import load_audio
        from asr.data.manifest import read_manifest

        named = [
            (u.audio_filepath, torch.from_numpy(load_audio(u.audio_filepath, sample_rate)))
            for u in read_manifest(noise)
        ]
    else:
        named = [(f"noise clip {i}", torch.as_tensor(c, dtype=torch.float32)) for i, c in enumerate(noise)]
    if not named:
        raise ValueError("no noise clips given")
    for name, c in named:
        if c.ndim != 1 or c.numel() == 0:
            raise ValueError(f"{name}: a noise clip must be a non-empty 1-D signal")
        if not torch.isfinite(c).all() or not c.abs().max() > 0:
            raise ValueError(f"{name}: noise clip is silent or not finite")
    return [c.float().contiguous() for _, c in named]
