import math

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.data.manifest import write_manifest
from asr.model.features import FeatureConfig, LogMel
from asr.training.augment import VTLP, AddNoise, SpecAugment, SpeedPerturb, warp_frequencies

SR = 16000


def padded_features(lengths: list[int], bins: int = 80, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), bins, generator=g) + 3.0  # nonzero everywhere it is valid
    lens = torch.tensor(lengths)
    x = x * (torch.arange(max(lengths))[None, :] < lens[:, None])[:, :, None]
    return x, lens


def tone(freq: float, seconds: float, batch: int = 1) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return torch.sin(2 * math.pi * freq * t).float()[None].repeat(batch, 1)


def peak_hz(x: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy() * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SR / len(x))


def snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    return 10 * math.log10(float((clean.double() ** 2).sum() / ((noisy - clean).double() ** 2).sum()))


def test_modules_are_identity_in_eval_mode():
    feats, flens = padded_features([50, 30])
    audio, alens = tone(300, 0.5, batch=2), torch.tensor([8000, 5000])
    assert SpecAugment(generator=0).eval()(feats, flens) is feats
    out, lens = SpeedPerturb((0.9,), generator=0).eval()(audio, alens)
    assert out is audio and lens is alens
    assert AddNoise([torch.randn(4000)], prob=1.0, generator=0).eval()(audio, alens) is audio
    assert VTLP(SR, 512, generator=0).eval()(torch.rand(257, 80), 2) is None


def test_specaugment_is_deterministic_under_seed():
    feats, lens = padded_features([200, 120, 80])
    a = SpecAugment(generator=3).train()
    b = SpecAugment(generator=3).train()
    assert torch.equal(a(feats, lens), b(feats, lens))
    assert torch.equal(a(feats, lens), b(feats, lens))  # the streams stay in step over calls
    assert not torch.equal(a(feats, lens), SpecAugment(generator=4).train()(feats, lens))


def test_specaugment_masks_stay_inside_valid_lengths():
    feats, lens = padded_features([300, 100, 20, 1])
    aug = SpecAugment(freq_masks=2, freq_width=27, time_masks=10, time_width=0.2, generator=0).train()
    for _ in range(10):
        out = aug(feats, lens)
        masked = (out == 0) & (feats != 0)
        valid = torch.arange(feats.shape[1])[None, :] < lens[:, None]
        assert not (masked & ~valid[:, :, None]).any()
        assert torch.equal(out[~valid], feats[~valid])  # padding untouched (and still zero)
        assert masked.any()
        assert torch.equal(out[~masked], feats[~masked])  # everything else is unchanged


def test_specaugment_time_masks_scale_with_length():
    feats, lens = padded_features([1000, 100], bins=4)
    aug = SpecAugment(freq_masks=0, time_masks=1, time_width=0.1, generator=0).train()
    widths = {0: [], 1: []}
    for _ in range(50):
        masked_frames = ((aug(feats, lens) == 0) & (feats != 0)).all(2).sum(1)
        for i in widths:
            widths[i].append(int(masked_frames[i]))
    assert max(widths[0]) <= 100 and max(widths[1]) <= 10
    assert max(widths[0]) > 10  # a long utterance gets wider masks than a short one could


def test_speed_perturb_lengths_and_shapes():
    audio = tone(440, 1.0, batch=3)
    lens = torch.tensor([16000, 12000, 8001])
    for f in (0.9, 1.0, 1.1):
        out, new_lens = SpeedPerturb((f,), generator=0).train()(audio, lens)
        assert new_lens.dtype == lens.dtype
        assert torch.allclose(new_lens.double(), lens.double() / f, atol=1.0)
        assert out.shape == (3, int(new_lens.max()))
        valid = torch.arange(out.shape[1])[None, :] < new_lens[:, None]
        assert (out[~valid] == 0).all()


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_scales_a_tone_frequency(factor):
    out, lens = SpeedPerturb((factor,), generator=0).train()(tone(440, 2.0), torch.tensor([32000]))
    assert peak_hz(out[0, : int(lens[0])]) == pytest.approx(440 * factor, abs=1.0)


def test_speed_perturb_is_deterministic_and_mixes_factors():
    audio, lens = tone(300, 0.25, batch=16), torch.full((16,), 4000)
    a = SpeedPerturb(generator=1, per_utterance=True).train()
    b = SpeedPerturb(generator=1, per_utterance=True).train()
    out_a, lens_a = a(audio, lens)
    out_b, lens_b = b(audio, lens)
    assert torch.equal(out_a, out_b) and torch.equal(lens_a, lens_b)
    assert len(set(lens_a.tolist())) == 3


def test_speed_perturb_draws_one_factor_per_batch_by_default():
    """Equal lengths stay equal, so a duration-bucketed batch gains no padding; batches still differ."""
    audio, lens = tone(300, 0.25, batch=8), torch.full((8,), 4000)
    sp = SpeedPerturb(generator=3).train()
    seen = set()
    for _ in range(12):
        _, new_lens = sp(audio, lens)
        assert len(set(new_lens.tolist())) == 1
        seen.add(int(new_lens[0]))
    assert len(seen) == 3


@pytest.mark.parametrize("target", [0.0, 10.0, 20.0])
def test_add_noise_hits_the_requested_snr(target):
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(3000, generator=g), 0.1 * torch.randn(7000, generator=g)]
    audio = 0.5 * tone(300, 0.5, batch=4)
    lens = torch.tensor([8000, 6000, 4000, 1000])
    audio = audio * (torch.arange(8000)[None, :] < lens[:, None])
    out = AddNoise(noise, snr_db=(target, target), prob=1.0, generator=0).train()(audio, lens)
    for i, n in enumerate(lens.tolist()):
        assert snr_db(audio[i, :n], out[i, :n]) == pytest.approx(target, abs=0.05)
        assert (out[i, n:] == 0).all()


def test_add_noise_probability_and_determinism():
    audio, lens = tone(300, 0.1, batch=64), torch.full((64,), 1600)
    noise = [torch.randn(500)]
    out_a = AddNoise(noise, prob=0.5, generator=2).train()(audio, lens)
    out_b = AddNoise(noise, prob=0.5, generator=2).train()(audio, lens)
    assert torch.equal(out_a, out_b)
    changed = int((out_a != audio).any(1).sum())
    assert 10 < changed < 54
    assert torch.equal(AddNoise(noise, prob=0.0, generator=2).train()(audio, lens), audio)


def test_add_noise_loads_clips_from_a_manifest(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.flac"):
        sf.write(tmp_path / name, (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
    write_manifest(
        tmp_path / "noise.jsonl",
        [{"audio_filepath": str(tmp_path / n), "duration": 1.0, "text": ""} for n in ("a.wav", "b.flac")],
    )
    aug = AddNoise(tmp_path / "noise.jsonl", snr_db=(5, 5), prob=1.0, generator=0).train()
    assert aug.clip_lengths.tolist() == [16000, 16000]  # resampled to 16 kHz on load
    audio, lens = tone(300, 1.0, batch=2), torch.tensor([16000, 16000])
    out = aug(audio, lens)
    assert snr_db(audio[0], out[0]) == pytest.approx(5.0, abs=0.05)


def test_add_noise_rejects_silent_clips():
    with pytest.raises(ValueError, match="silent"):
        AddNoise([torch.zeros(100)])


def test_speed_perturb_under_bf16_autocast_stays_float32():
    """Mixed-precision training must not break (or degrade) the resampler."""
    from asr.training.augment import SpeedPerturb

    sp = SpeedPerturb((0.9, 1.1), generator=0).train()
    audio = torch.randn(4, 16000)
    lengths = torch.tensor([16000, 12000, 9000, 16000])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out, new_lengths = sp(audio, lengths)
    assert out.dtype == torch.float32
    assert out.shape[1] == int(new_lengths.max())


def test_vtlp_warp_is_linear_below_the_knee_and_keeps_the_band_edges():
    freqs = torch.tensor([0.0, 1000.0, 3000.0, 6000.0, 8000.0], dtype=torch.float64)
    alpha = torch.tensor([[0.9], [1.0], [1.1]], dtype=torch.float64)
    warped = warp_frequencies(freqs, alpha, nyquist=8000.0, boundary_hz=4800.0)
    torch.testing.assert_close(warped[:, :3], alpha * freqs[:3])
    assert (warped[:, 0] == 0).all() and (warped[:, -1] == 8000.0).all()
    assert (warped.diff(dim=1) > 0).all()  # monotonic: no two frequencies fold onto one


def test_vtlp_factor_one_is_the_model_filterbank():
    fb = LogMel(FeatureConfig()).mel_fb
    out = VTLP(SR, 512, factors=(1.0, 1.0), generator=0).train()(fb, 3)
    assert out.shape == (3, *fb.shape)
    torch.testing.assert_close(out, fb.expand(3, -1, -1))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_vtlp_moves_a_tone_like_a_vocal_tract_of_another_length(factor):
    """A 1 kHz tone through the warped filterbank peaks in the mel band of factor x 1 kHz."""
    import librosa

    features = LogMel(FeatureConfig(n_mels=80))
    warped = features.log_mel(tone(1000, 1.0), VTLP(SR, 512, (factor, factor), generator=0).train()(features.mel_fb, 1))
    band_hz = librosa.mel_frequencies(80 + 2, fmax=SR / 2)[1:-1]  # filter centres
    peak = band_hz[int(warped[0].mean(0).argmax())]
    assert peak == pytest.approx(1000 * factor, rel=0.04)
    assert abs(peak - 1000 * factor) < abs(
        band_hz[int(features.log_mel(tone(1000, 1.0))[0].mean(0).argmax())] - 1000 * factor
    )


def test_vtlp_draws_a_factor_per_utterance_reproducibly():
    fb = LogMel(FeatureConfig()).mel_fb
    a = VTLP(SR, 512, generator=3).train()(fb, 4)
    b = VTLP(SR, 512, generator=3).train()(fb, 4)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1])


def test_vtlp_rejects_a_bad_range():
    with pytest.raises(ValueError, match="range"):
        VTLP(SR, 512, factors=(1.1, 0.9))
    with pytest.raises(ValueError, match="Nyquist"):
        VTLP(SR, 512, factors=(0.9, 1.1), boundary_hz=7800.0)
