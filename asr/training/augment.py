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


# --- what real recordings carry: silence, pauses, background noise, gain, rooms, telephone lines -----------------
#
# A model trained on clean, tightly trimmed utterances (the synthetic corpus, or any trimmed read speech) turns
# what real recordings carry around and between the words into words: 2 s of digital silence became "le oleleln"
# and 5 s of white noise a 27-word sentence (issue 17; docs/augmentation.md). Each module below puts one such
# thing into training audio, per utterance with probability ``prob``, on the batch's device, drawing every random
# parameter from its CPU generator (the seeding contract at the top of this module). The two that change lengths
# (silence padding and pauses) return new lengths; the others keep them. Padding stays zero throughout.


def _check_range(name: str, lo_hi: Sequence[float], low: float | None = None) -> tuple[float, float]:
    if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1] or (low is not None and lo_hi[0] < low):
        floor = f", from {low}" if low is not None else ""
        raise ValueError(f"{name} must be a range (low, high) with low <= high{floor}, got {list(lo_hi)}")
    return float(lo_hi[0]), float(lo_hi[1])


def _check_prob(prob: float) -> float:
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    return float(prob)


def _uniform(g: torch.Generator, n: int, lo_hi: tuple[float, float]) -> torch.Tensor:
    return lo_hi[0] + torch.rand(n, generator=g, dtype=torch.float64) * (lo_hi[1] - lo_hi[0])


def _respliced(rows: list[torch.Tensor], like: torch.Tensor, lengths_like: torch.Tensor):
    """Rows of new lengths back into one zero-padded (B, S') batch and its (B,) lengths."""
    lengths = torch.tensor([r.shape[0] for r in rows], dtype=lengths_like.dtype)
    out = like.new_zeros(len(rows), int(lengths.max()) if rows else 0)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out, lengths.to(lengths_like.device)


class SilencePad(nn.Module):
    """Digital silence before and after the utterances of a batch (a share ``prob`` of batches): a lead-in and a
    tail drawn from ``seconds`` = (lo, hi) each, once per batch, their sum split at random between the two
    sides of each utterance.

    Real clips start and end with a lead-in and a tail; a model that never saw one emits letters there (0.6 s of
    trailing zeros turned "denver" into "frondenveyw"). Silence here is exact zeros: put
    :class:`ColouredNoise` or :class:`AddNoise` after it to make it a noise floor.

    One amount per batch, not per utterance: every row grows by the same number of samples, so the batch's
    width grows by what each row gained. Drawn per utterance, the widest draw set the width of all rows, and
    on the general synthetic corpus (10 utterances of ~4 s a batch, issue 17) the recurrent layers ran ~1.5x
    the frames for the same audio, most of them padding.
    """

    def __init__(
        self,
        prob: float = 0.5,
        seconds: Sequence[float] = (0.0, 1.0),
        sample_rate: int = 16000,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        self.prob = _check_prob(prob)
        self.seconds = _check_range("silence padding seconds", seconds, low=0.0)
        self.sample_rate = sample_rate
        self.generator = make_generator(generator)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training or audio.shape[0] == 0:
            return audio, audio_lengths
        b, g = audio.shape[0], self.generator
        apply = bool(torch.rand(1, generator=g) < self.prob)
        total = int((_uniform(g, 2, self.seconds).sum() * self.sample_rate).round())
        split = torch.rand(b, generator=g, dtype=torch.float64)
        if not apply or total == 0:
            return audio, audio_lengths
        before = (split * total).long()
        lengths = audio_lengths.detach().cpu()
        out = audio.new_zeros(b, audio.shape[1] + total)
        for i in range(b):
            n, lead = int(lengths[i]), int(before[i])
            out[i, lead : lead + n] = audio[i, :n]
        return out, audio_lengths + total


class InsertPauses(nn.Module):
    """Up to ``max_pauses`` pauses of silence inside each utterance of a batch (a share ``prob`` of batches),
    each of ``seconds`` = (lo, hi), at its quiet 10-ms frames.

    People pause between words and read sentences end to end; a corpus of single trimmed phrases has no pause
    inside, and a model trained on it spells a pause out. A pause goes where the utterance is quiet already (a
    frame whose energy is in the quietest ``quiet_share`` of its frames), so it falls between words or in a stop
    closure, not through a vowel; the transcript is unchanged. The number and lengths of the pauses are drawn
    once per batch (each utterance picks its own places), so every row grows alike, as in :class:`SilencePad`.
    """

    def __init__(
        self,
        prob: float = 0.3,
        max_pauses: int = 2,
        seconds: Sequence[float] = (0.1, 0.6),
        quiet_share: float = 0.2,
        sample_rate: int = 16000,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        if max_pauses < 1:
            raise ValueError(f"max_pauses must be 1 or more, got {max_pauses}")
        if not 0.0 < quiet_share <= 1.0:
            raise ValueError(f"quiet_share must be in (0, 1], got {quiet_share}")
        self.prob = _check_prob(prob)
        self.max_pauses, self.quiet_share = max_pauses, quiet_share
        self.seconds = _check_range("pause seconds", seconds, low=0.0)
        self.sample_rate = sample_rate
        self.hop = sample_rate // 100
        self.generator = make_generator(generator)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training or audio.shape[0] == 0:
            return audio, audio_lengths
        b, g = audio.shape[0], self.generator
        apply = bool(torch.rand(1, generator=g) < self.prob)
        k = int(torch.randint(1, self.max_pauses + 1, (1,), generator=g))
        picks = torch.rand(b, self.max_pauses, generator=g, dtype=torch.float64)
        pause_samples = [int(x * self.sample_rate) for x in _uniform(g, self.max_pauses, self.seconds)[:k]]
        if not apply or sum(pause_samples) == 0:
            return audio, audio_lengths
        lengths = audio_lengths.detach().cpu()
        rows = []
        for i in range(b):
            n = int(lengths[i])
            x = audio[i, :n]
            frames = n // self.hop
            if frames < 3:  # too short to hold a pause: the same length, as silence at its end
                rows.append(torch.cat([x, x.new_zeros(sum(pause_samples))]))
                continue
            energy = (x[: frames * self.hop].float().view(frames, self.hop) ** 2).mean(1).cpu()
            inner = energy[1:-1]  # never at the very edges: that is silence padding's job
            quiet = torch.nonzero(inner <= torch.quantile(inner, self.quiet_share)).flatten() + 1
            chosen = quiet[(picks[i, :k] * len(quiet)).long().clamp(max=len(quiet) - 1)]
            # Pauses that drew the same frame merge into one: the row still grows by the batch's total.
            cuts = sorted(int(c) * self.hop + self.hop // 2 for c in chosen)
            pieces, prev = [], 0
            for c, samples in zip(cuts, pause_samples):
                pieces += [x[prev:c], x.new_zeros(samples)]
                prev = c
            pieces.append(x[prev:])
            rows.append(torch.cat(pieces))
        return _respliced(rows, audio, audio_lengths)


def _scale_to_snr(
    audio: torch.Tensor, noise: torch.Tensor, valid: torch.Tensor, snr: torch.Tensor, apply: torch.Tensor
) -> torch.Tensor:
    """``audio`` plus ``noise`` scaled per row to ``snr`` dB against the row's *sounding* samples (exact zeros,
    from padding or inserted pauses, do not dilute the signal's power), where ``apply``."""
    sounding = (audio != 0) & valid
    n = sounding.sum(1).clamp_min(1).double()
    p_signal = (audio.double() ** 2 * sounding).sum(1) / n
    p_noise = (noise.double() ** 2 * valid).sum(1) / valid.sum(1).clamp_min(1).double()
    gain = torch.sqrt(p_signal / (p_noise.clamp_min(1e-20) * 10 ** (snr / 10)))
    gain = torch.where(apply & (p_signal > 0), gain, torch.zeros_like(gain))
    return audio + (gain[:, None] * noise * valid).to(audio.dtype)


def coloured_noise(exponent: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """(B, length) Gaussian noise whose power falls as ``1 / f ** exponent`` (B,): 0 white, 1 pink, 2 brown
    (red). Shaped in the frequency domain, unit variance per row; drawn on the CPU from ``generator``."""
    b = exponent.shape[0]
    white = torch.randn(b, length, generator=generator, dtype=torch.float64)
    spectrum = torch.fft.rfft(white, dim=1)
    f = torch.fft.rfftfreq(length, dtype=torch.float64)
    f[0] = f[1] if length > 1 else 1.0  # no infinite DC
    spectrum = spectrum * f[None, :] ** (-exponent.double()[:, None] / 2)
    x = torch.fft.irfft(spectrum, n=length, dim=1)
    x = x - x.mean(1, keepdim=True)
    return (x / x.std(1, keepdim=True).clamp_min(1e-12)).float()


class ColouredNoise(nn.Module):
    """Synthetic background noise, ``1/f**beta`` with ``beta`` drawn from ``exponent`` = (lo, hi) per utterance
    (0 white, 1 pink, 2 brown: hiss, most room and traffic noise, rumble), at an SNR drawn from ``snr_db``.

    Needs no noise corpus. The SNR is against the utterance's sounding samples, and the noise covers the whole
    utterance, silence padding and pauses included: that is what makes those a noise floor.
    """

    def __init__(
        self,
        prob: float = 0.5,
        snr_db: Sequence[float] = (5.0, 30.0),
        exponent: Sequence[float] = (0.0, 2.0),
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        self.prob = _check_prob(prob)
        self.snr_db = _check_range("coloured noise snr_db", snr_db)
        self.exponent = _check_range("coloured noise exponent", exponent, low=0.0)
        self.generator = make_generator(generator)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        if not self.training or audio.numel() == 0:
            return audio
        b, s = audio.shape
        g, dev = self.generator, audio.device
        apply = torch.rand(b, generator=g) < self.prob
        beta = _uniform(g, b, self.exponent)
        snr = _uniform(g, b, self.snr_db)
        noise = coloured_noise(beta, s, g).to(dev)
        valid = lengths_to_mask(audio_lengths.to(dev), s)
        return _scale_to_snr(audio, noise, valid, snr.to(dev), apply.to(dev))


class Babble(nn.Module):
    """Other people talking: the sum of 1 to ``max_voices`` other utterances *of the same batch*, each from a
    random offset and looped to this one's length, at an SNR drawn from ``snr_db``.

    Needs no corpus either: the batch's own utterances are the crowd (other speakers, when the batch mixes them).
    A batch of one utterance has no one else to talk and is left alone.
    """

    def __init__(
        self,
        prob: float = 0.3,
        snr_db: Sequence[float] = (5.0, 20.0),
        max_voices: int = 3,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        if max_voices < 1:
            raise ValueError(f"max_voices must be 1 or more, got {max_voices}")
        self.prob = _check_prob(prob)
        self.snr_db = _check_range("babble snr_db", snr_db)
        self.max_voices = max_voices
        self.generator = make_generator(generator)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        if not self.training or audio.numel() == 0 or audio.shape[0] < 2:
            return audio
        b, s = audio.shape
        g, dev = self.generator, audio.device
        apply = torch.rand(b, generator=g) < self.prob
        voices = torch.randint(1, self.max_voices + 1, (b,), generator=g)
        # the k-th voice of row i is row (i + shift) % b, shift in 1..b-1: never the utterance itself
        shifts = torch.randint(1, b, (b, self.max_voices), generator=g)
        offsets = torch.rand(b, self.max_voices, generator=g, dtype=torch.float64)
        snr = _uniform(g, b, self.snr_db)
        lengths = audio_lengths.to(dev).clamp_min(1)
        lengths_cpu = audio_lengths.detach().cpu().clamp_min(1)
        pos = torch.arange(s, device=dev)[None, :]
        noise = torch.zeros_like(audio)
        rows = torch.arange(b)
        for k in range(self.max_voices):
            other = (rows + shifts[:, k]) % b
            start = (offsets[:, k] * lengths_cpu[other]).long()
            idx = (start.to(dev)[:, None] + pos) % lengths[other.to(dev)][:, None]
            voice = torch.gather(audio[other.to(dev)], 1, idx)
            noise = noise + voice * (k < voices).to(dev, audio.dtype)[:, None]
        valid = lengths_to_mask(audio_lengths.to(dev), s)
        return _scale_to_snr(audio, noise, valid, snr.to(dev), apply.to(dev))


class RandomGain(nn.Module):
    """A recording level drawn from ``gain_db`` = (lo, hi) per utterance; what goes past full scale clips, as an
    input stage driven too hard does. (Per-utterance normalisation undoes a plain gain, not the clipping, nor the
    level of the noise that later stages add against a fixed floor.)"""

    def __init__(
        self, prob: float = 0.5, gain_db: Sequence[float] = (-20.0, 10.0), generator: GeneratorLike = None
    ) -> None:
        super().__init__()
        self.prob = _check_prob(prob)
        self.gain_db = _check_range("gain_db", gain_db)
        self.generator = make_generator(generator)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        if not self.training or audio.numel() == 0:
            return audio
        b, g = audio.shape[0], self.generator
        apply = torch.rand(b, generator=g) < self.prob
        gain = 10 ** (_uniform(g, b, self.gain_db) / 20)
        scaled = (audio * gain.to(audio.device, audio.dtype)[:, None]).clamp(-1.0, 1.0)
        return torch.where(apply.to(audio.device)[:, None], scaled, audio)


def room_impulse_response(rt60: float, sample_rate: int, drr_db: float, generator: torch.Generator) -> torch.Tensor:
    """A synthetic room impulse response: a direct path (1 at t = 0) and a diffuse tail of Gaussian noise whose
    envelope decays by 60 dB in ``rt60`` seconds (Polack's model of a diffuse field), starting 2.5 ms after it, its
    energy ``drr_db`` below the direct path's (the direct-to-reverberant ratio: about 10 dB near the talker, 0 dB
    or less across a room). ``rt60`` s long."""
    n = max(2, int(rt60 * sample_rate))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    tail = torch.randn(n, generator=generator, dtype=torch.float64) * torch.exp(-3 * math.log(10) * t / rt60)
    tail[: int(0.0025 * sample_rate) + 1] = 0.0
    tail = tail * math.sqrt(10 ** (-drr_db / 10) / max(float((tail**2).sum()), 1e-20))
    tail[0] = 1.0
    return tail.float()


class SimulatedRoom(nn.Module):
    """Reverberation: each utterance convolved with its own :func:`room_impulse_response`, RT60 drawn from
    ``rt60`` (0.2 s: a furnished office; 0.8 s: a bare hall) and direct-to-reverberant ratio from ``drr_db``.

    No impulse-response corpus needed (pyroomacoustics would add a dependency; its shoebox model gives the same
    exponential decay). The output keeps the input's length (the tail past the end is cut, as a clip's end would
    cut it) and its RMS level; the direct path stays at t = 0, so the transcript's timing does not move.
    """

    def __init__(
        self,
        prob: float = 0.3,
        rt60: Sequence[float] = (0.2, 0.8),
        drr_db: Sequence[float] = (0.0, 10.0),
        sample_rate: int = 16000,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        self.prob = _check_prob(prob)
        self.rt60 = _check_range("rt60", rt60)
        if self.rt60[0] <= 0:
            raise ValueError(f"rt60 must be positive seconds, got {list(rt60)}")
        self.drr_db = _check_range("drr_db", drr_db)
        self.sample_rate = sample_rate
        self.generator = make_generator(generator)

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        if not self.training or audio.numel() == 0:
            return audio
        b, s = audio.shape
        g, dev = self.generator, audio.device
        apply = torch.rand(b, generator=g) < self.prob
        rt60, drr = _uniform(g, b, self.rt60), _uniform(g, b, self.drr_db)
        rows = torch.nonzero(apply).flatten().tolist()
        if not rows:
            return audio
        out = audio.clone()
        valid = lengths_to_mask(audio_lengths.to(dev), s)
        with torch.autocast(device_type=dev.type, enabled=False):
            for i in rows:
                h = room_impulse_response(float(rt60[i]), self.sample_rate, float(drr[i]), g).to(dev)
                x = audio[i].float() * valid[i]
                n = s + h.shape[0] - 1
                wet = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(h, n=n), n=n)[:s] * valid[i]
                level = torch.sqrt((x**2).sum() / (wet**2).sum().clamp_min(1e-20))
                out[i] = (wet * level).to(audio.dtype)
        return out


class TelephoneBand(nn.Module):
    """A telephone line: down to 8 kHz and back (nothing above 4 kHz survives), band-passed to 300-3400 Hz
    (the G.712 channel), and optionally mu-law companded to 8 bits (G.711). Lengths are kept."""

    def __init__(
        self,
        prob: float = 0.2,
        sample_rate: int = 16000,
        low_hz: float = 300.0,
        high_hz: float = 3400.0,
        mu_law: bool = True,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__()
        if not 0 < low_hz < high_hz < 4000:
            raise ValueError(f"the telephone band must satisfy 0 < low < high < 4000 Hz, got {low_hz}-{high_hz}")
        self.prob = _check_prob(prob)
        self.sample_rate, self.low_hz, self.high_hz, self.mu_law = sample_rate, low_hz, high_hz, mu_law
        self.generator = make_generator(generator)

    def channel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) at ``sample_rate`` through the line, every row (no randomness)."""
        s = audio.shape[1]
        x = resample(audio.float(), self.sample_rate, 8000)
        spectrum = torch.fft.rfft(x, dim=1)
        f = torch.fft.rfftfreq(x.shape[1], d=1 / 8000).to(x.device)
        # raised-cosine edges 100 Hz wide, so the band-pass does not ring like a brick wall
        lo = 0.5 - 0.5 * torch.cos(math.pi * ((f - (self.low_hz - 100)) / 100).clamp(0, 1))
        hi = 0.5 + 0.5 * torch.cos(math.pi * ((f - self.high_hz) / 100).clamp(0, 1))
        x = torch.fft.irfft(spectrum * (lo * hi), n=x.shape[1], dim=1)
        if self.mu_law:
            mu = 255.0
            y = torch.sign(x) * torch.log1p(mu * x.abs().clamp(max=1.0)) / math.log1p(mu)
            y = torch.round(y * 127.5) / 127.5  # 8 bits
            x = torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu
        y = resample(x, 8000, self.sample_rate)
        return nn.functional.pad(y, (0, max(0, s - y.shape[1])))[:, :s]

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        if not self.training or audio.numel() == 0:
            return audio
        apply = torch.rand(audio.shape[0], generator=self.generator) < self.prob
        rows = torch.nonzero(apply).flatten().to(audio.device)
        if len(rows) == 0:
            return audio
        out = audio.clone()
        with torch.autocast(device_type=audio.device.type, enabled=False):
            line = self.channel(audio[rows])
        valid = lengths_to_mask(audio_lengths.to(audio.device)[rows], audio.shape[1])
        out[rows] = (line * valid).to(audio.dtype)
        return out
