"""Training-time augmentation for what real recordings carry: silence around and pauses inside an utterance,
coloured noise and babble at a drawn SNR, gain with clipping, simulated rooms, telephone lines.

Each module is checked for what it claims (the SNR it draws is the SNR it delivers, an RT60 is a decay of 60 dB in
that time, the telephone band passes 1 kHz and stops 200 Hz and 5 kHz), that padding stays zero, that it is the
identity in eval mode and with prob 0, and that a seed fixes its draws.
"""

import math

import numpy as np
import pytest
import torch

from asr.training.augment import (
    Babble,
    ColouredNoise,
    InsertPauses,
    RandomGain,
    SilencePad,
    SimulatedRoom,
    TelephoneBand,
    coloured_noise,
    room_impulse_response,
)

SR = 16000


def tone(freq: float, seconds: float, amp: float = 0.3) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def batch(*rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([r.shape[0] for r in rows])
    out = torch.zeros(len(rows), int(lengths.max()))
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out, lengths


def power_db(x: torch.Tensor) -> float:
    return 10 * math.log10(float((x.double() ** 2).mean()) + 1e-30)


def band_db(x: torch.Tensor, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x.double().numpy())) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return 10 * math.log10(spectrum[(f >= lo) & (f < hi)].mean() + 1e-30)


def speechlike(seconds: float, seed: int = 0) -> torch.Tensor:
    """Noise bursts of 0.2 s with 0.1-s quiet gaps (never exact zeros): words and the gaps between them."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SR)
    envelope = torch.where((torch.arange(n) % int(0.3 * SR)) < int(0.2 * SR), 0.3, 0.003)
    return torch.randn(n, generator=g) * envelope


ALL = [
    lambda: SilencePad(prob=1.0, generator=0),
    lambda: InsertPauses(prob=1.0, generator=0),
    lambda: ColouredNoise(prob=1.0, generator=0),
    lambda: Babble(prob=1.0, generator=0),
    lambda: RandomGain(prob=1.0, generator=0),
    lambda: SimulatedRoom(prob=1.0, generator=0),
    lambda: TelephoneBand(prob=1.0, generator=0),
]


def _call(module, audio, lengths):
    out = module(audio, lengths)
    return out if isinstance(out, tuple) else (out, lengths)


@pytest.mark.parametrize("make", ALL)
def test_identity_in_eval_mode_and_at_prob_zero_and_seeded(make):
    audio, lengths = batch(speechlike(1.0, 1), speechlike(0.6, 2))
    module = make().eval()
    out, out_lengths = _call(module, audio, lengths)
    assert out is audio and out_lengths is lengths
    off = make()
    off.prob = 0.0
    out, out_lengths = _call(off.train(), audio, lengths)
    assert torch.equal(out, audio) and torch.equal(out_lengths, lengths)
    a, la = _call(make().train(), audio, lengths)
    b, lb = _call(make().train(), audio, lengths)
    assert torch.equal(a, b) and torch.equal(la, lb)  # same seed, same draws
    assert not torch.equal(a, audio)  # and it did something
    # padding stays zero
    for row, n in enumerate(la.tolist()):
        assert torch.all(a[row, n:] == 0)


def test_silence_pad_puts_the_utterance_intact_between_zeros():
    x = speechlike(0.5)
    audio, lengths = batch(x, x[:4000], x[:6000])
    out, new = SilencePad(prob=1.0, seconds=(0.2, 0.5), generator=3).train()(audio, lengths)
    # One amount per batch: every row grew by the same, and so did the batch's width (no extra padding).
    grown = new - lengths
    assert len(set(grown.tolist())) == 1 and 0.4 * SR <= int(grown[0]) <= 1.0 * SR
    assert out.shape[1] == audio.shape[1] + int(grown[0])
    leads = []
    for row, original in enumerate((x, x[:4000], x[:6000])):
        y = out[row, : int(new[row])]
        nonzero = torch.nonzero(y).flatten()
        lead, tail = int(nonzero[0]), int(new[row]) - 1 - int(nonzero[-1])
        assert lead + tail == int(grown[0])
        assert torch.equal(y[lead : lead + len(original)], original)
        assert torch.all(out[row, int(new[row]) :] == 0)
        leads.append(lead)
    assert len(set(leads)) == 3  # each utterance splits it its own way
    # Over many batches, about prob of them are padded.
    pad = SilencePad(prob=0.3, seconds=(0.2, 0.5), generator=4).train()
    padded = sum(bool((pad(audio, lengths)[1] > lengths).all()) for _ in range(400))
    assert 80 <= padded <= 160
    with pytest.raises(ValueError, match="silence padding seconds must be a range"):
        SilencePad(seconds=(0.5, 0.1))


def test_pauses_go_into_quiet_frames_and_leave_the_sound_in_order():
    x = speechlike(1.5)
    audio, lengths = batch(x)
    out, new = InsertPauses(prob=1.0, max_pauses=3, seconds=(0.2, 0.3), generator=5).train()(audio, lengths)
    y = out[0, : int(new[0])]
    zero_runs = []
    run = 0
    for v in (y == 0).tolist() + [False]:
        if v:
            run += 1
        elif run:
            zero_runs.append(run)
            run = 0
    assert 1 <= len(zero_runs) <= 3 and all(0.2 * SR <= r <= 0.3 * SR + 1 for r in zero_runs)
    assert int(new[0]) == len(x) + sum(zero_runs)
    assert torch.equal(y[y != 0], x)  # the utterance itself, in order, nothing lost
    # each pause starts in a quiet gap (envelope 0.003), never inside a burst
    starts = torch.nonzero((y[1:] == 0) & (y[:-1] != 0)).flatten() + 1
    for s in starts.tolist():
        before = int(s) - sum(r for r, st in zip(zero_runs, starts.tolist()) if st < s)
        assert before % int(0.3 * SR) >= int(0.2 * SR) - 80, before
    # In a batch, every row grows by the batch's one draw of pauses, so the width grows by no more.
    audio, lengths = batch(x, x[:12000], x[:400])
    out, new = InsertPauses(prob=1.0, max_pauses=3, seconds=(0.2, 0.3), generator=6).train()(audio, lengths)
    grown = new - lengths
    assert len(set(grown.tolist())) == 1 and int(grown[0]) >= 0.2 * SR
    assert out.shape[1] == audio.shape[1] + int(grown[0])
    for row, original in enumerate((x, x[:12000], x[:400])):
        y = out[row, : int(new[row])]
        assert torch.equal(y[y != 0], original[original != 0])


@pytest.mark.parametrize("target", [5.0, 20.0])
def test_coloured_noise_hits_the_snr_against_the_sounding_samples(target):
    x = tone(440, 1.0)
    padded = torch.cat([torch.zeros(SR // 2), x])  # silence padding must not lower the SNR's reference
    audio, lengths = batch(padded, x[:8000])
    out = ColouredNoise(prob=1.0, snr_db=(target, target), generator=1).train()(audio, lengths)
    noise = out - audio
    assert power_db(x) - power_db(noise[0, : len(padded)]) == pytest.approx(target, abs=0.05)
    assert torch.all(noise[0, SR // 2 - 100 : SR // 2] != 0)  # the noise covers the silence too
    assert torch.all(out[1, 8000:] == 0)


def test_coloured_noise_slopes():
    white, brown = coloured_noise(torch.tensor([0.0, 2.0]), 4 * SR, torch.Generator().manual_seed(0))
    # white: flat; brown: 6 dB per octave down, so ~40 dB between 100-200 Hz and 2-4 kHz... at least 20
    assert abs(band_db(white, 100, 200) - band_db(white, 2000, 4000)) < 1.5
    assert band_db(brown, 100, 200) - band_db(brown, 2000, 4000) > 20
    pink = coloured_noise(torch.tensor([1.0]), 4 * SR, torch.Generator().manual_seed(1))[0]
    drop = band_db(pink, 100, 200) - band_db(pink, 1600, 3200)  # 1/f: 3 dB per octave, 4 octaves
    assert 9 < drop < 15
    assert float(white.std()) == pytest.approx(1.0, abs=1e-3)


def test_babble_is_the_other_utterances_at_the_snr():
    a, b = tone(300, 1.0), tone(2000, 0.8)
    audio, lengths = batch(a, b)
    out = Babble(prob=1.0, snr_db=(10.0, 10.0), max_voices=1, generator=2).train()(audio, lengths)
    noise0 = (out - audio)[0]
    assert band_db(noise0, 1900, 2100) - band_db(noise0, 250, 350) > 30  # row 0 hears row 1's tone
    assert power_db(a) - power_db(noise0) == pytest.approx(10.0, abs=0.1)
    noise1 = (out - audio)[1, :12800]
    assert band_db(noise1, 250, 350) - band_db(noise1, 1900, 2100) > 30
    alone, lone_len = batch(a)
    assert torch.equal(Babble(prob=1.0, generator=0).train()(alone, lone_len), alone)  # nobody else to talk


def test_gain_scales_and_clips():
    x = tone(440, 0.5, amp=0.5)
    audio, lengths = batch(x)
    loud = RandomGain(prob=1.0, gain_db=(12.0, 12.0), generator=0).train()(audio, lengths)
    assert float(loud.abs().max()) == 1.0  # 0.5 * 4 clipped at full scale
    quiet = RandomGain(prob=1.0, gain_db=(-20.0, -20.0), generator=0).train()(audio, lengths)
    assert torch.allclose(quiet, audio * 0.1, atol=1e-7)


def _rt60_from(h: torch.Tensor) -> float:
    """RT60 by Schroeder's backward integration, fitted between -5 and -25 dB (T20)."""
    energy = h.double().numpy()[1:] ** 2  # without the direct path
    edc = 10 * np.log10(np.cumsum(energy[::-1])[::-1] / energy.sum())
    i5, i25 = np.argmax(edc <= -5), np.argmax(edc <= -25)
    return 3 * (i25 - i5) / SR


@pytest.mark.parametrize("rt60", [0.3, 0.7])
def test_room_impulse_response_decays_by_60_db_in_rt60(rt60):
    h = room_impulse_response(rt60, SR, drr_db=5.0, generator=torch.Generator().manual_seed(0))
    assert h[0] == 1.0 and len(h) == int(rt60 * SR)
    assert _rt60_from(h) == pytest.approx(rt60, rel=0.15)
    assert 10 * math.log10(1.0 / float((h[1:] ** 2).sum())) == pytest.approx(5.0, abs=0.01)


def test_simulated_room_smears_in_time_and_keeps_length_and_level():
    x = torch.zeros(SR)
    x[: SR // 4] = tone(1000, 0.25)  # a burst, then silence that the reverberation fills
    audio, lengths = batch(x)
    out = SimulatedRoom(prob=1.0, rt60=(0.6, 0.6), drr_db=(0.0, 0.0), generator=4).train()(audio, lengths)
    assert out.shape == audio.shape
    assert power_db(out[0]) == pytest.approx(power_db(x), abs=0.01)
    tail = out[0, SR // 4 + 1600 : SR // 4 + 3200]  # 100-200 ms after the burst ended
    assert power_db(tail) > power_db(x[: SR // 4]) - 30
    with pytest.raises(ValueError, match="rt60 must be positive"):
        SimulatedRoom(rt60=(0.0, 0.5))


def test_telephone_band_passes_speech_frequencies_only():
    line = TelephoneBand(prob=1.0, mu_law=False, generator=0)
    for freq, expect in [(1000, "pass"), (2500, "pass"), (150, "stop"), (5000, "stop"), (7000, "stop")]:
        x = tone(freq, 0.5)
        y = line.channel(x[None])[0]
        assert y.shape == x.shape
        gain = power_db(y[800:-800]) - power_db(x[800:-800])
        if expect == "pass":
            assert abs(gain) < 1.0, (freq, gain)
        else:
            assert gain < -30, (freq, gain)
    x = tone(1000, 0.5)
    companded = TelephoneBand(prob=1.0, mu_law=True, generator=0).channel(x[None])[0]
    error = power_db(companded[800:-800] - line.channel(x[None])[0][800:-800]) - power_db(x)
    assert -45 < error < -25  # 8-bit mu-law: about 35-40 dB signal to quantisation noise
    with pytest.raises(ValueError, match="telephone band"):
        TelephoneBand(low_hz=300, high_hz=5000)


ALL_ON = [
    "augment.silence_prob=0.5",
    "augment.pause_prob=0.5",
    "augment.reverb_prob=0.5",
    "augment.babble_prob=0.5",
    "augment.coloured_noise_prob=0.5",
    "augment.gain_prob=0.5",
    "augment.telephone_prob=0.5",
]


def test_config_turns_them_on_in_order_and_off_by_default():
    from asr.training.config import AugmentConfig, load_config
    from asr.training.ctc_module import recording_augmentations

    assert recording_augmentations(AugmentConfig(), SR, 0) == ([], [])  # all off by default
    aug = load_config(None, ALL_ON).augment
    before, after = recording_augmentations(aug, SR, 0)
    assert [type(m).__name__ for m in before] == [
        "InsertPauses",
        "SilencePad",
        "SimulatedRoom",
        "Babble",
        "ColouredNoise",
    ]
    assert [type(m).__name__ for m in after] == ["RandomGain", "TelephoneBand"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("augment.silence_prob=1.5", r"augment.silence_prob is a share of utterances, in \[0, 1\]; got 1.5"),
        ("augment.pause_seconds=[0.5, 0.1]", r"augment.pause_seconds must be a range \[low, high\]"),
        ("augment.coloured_noise_exponent=[-1, 2]", r"augment.coloured_noise_exponent must be a range"),
        ("augment.reverb_rt60=[0, 0.5]", "augment.reverb_rt60 must be positive seconds"),
        ("augment.babble_voices=0", "augment.pause_count and augment.babble_voices must be 1 or more"),
    ],
)
def test_bad_augmentation_settings_are_one_line_errors(override, message):
    from asr.training.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_training_runs_with_every_recording_augmentation(tiny_corpus, tmp_path):
    from conftest import TINY_MODEL

    from asr.cli import main
    from asr.model.file import load_model

    rc = main(
        [
            "train",
            "--train-manifest",
            str(tiny_corpus["train"]),
            "--val-manifest",
            str(tiny_corpus["dev"]),
            "--output-dir",
            str(tmp_path),
            "--max-epochs",
            "1",
            *TINY_MODEL,
            *[o.replace("=0.5", "=1.0") for o in ALL_ON],
        ]
    )
    assert rc == 0
    meta = load_model(tmp_path / "model.pt").metadata
    assert meta["config"]["augment"]["telephone_prob"] == 1.0 and meta["validations"]
