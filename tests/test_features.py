import librosa
import numpy as np
import pytest
import torch

from asr.model.features import FeatureConfig, LogMel


def test_log_mel_matches_librosa():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=80)
    ours = LogMel(FeatureConfig(normalize="none")).log_mel(torch.from_numpy(y)[None])[0].numpy().T
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, np.log(ref + 1e-6), atol=2e-3)


def test_lengths_and_padding_are_zero():
    feats = LogMel(FeatureConfig())
    audio = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 8000])
    x, n = feats(audio, lengths)
    assert x.shape == (2, 101, 80)
    assert n.tolist() == [101, 51]
    assert torch.all(x[1, 51:] == 0)
    # per-utterance normalisation: zero mean, unit variance over valid frames
    assert x[1, :51].mean(0).abs().max() < 1e-4
    assert (x[1, :51].std(0, unbiased=False) - 1).abs().max() < 1e-2


def test_features_do_not_hear_padding():
    feats = LogMel(FeatureConfig())
    a = torch.randn(1, 8000)
    alone, _ = feats(a, torch.tensor([8000]))
    noisy_pad = torch.cat([a, torch.randn(1, 8000)], dim=1)
    batched, _ = feats(noisy_pad, torch.tensor([8000]))
    torch.testing.assert_close(batched[:, : alone.shape[1]], alone, atol=1e-4, rtol=1e-4)


def test_global_normalisation_uses_stored_stats():
    feats = LogMel(FeatureConfig(normalize="global"))
    audio = torch.randn(1, 16000)
    raw = feats.log_mel(audio)[0]
    feats.set_global_stats(raw.sum(0), (raw**2).sum(0), raw.shape[0])
    x, _ = feats(audio, torch.tensor([16000]))
    assert x[0].mean(0).abs().max() < 1e-3
    # the statistics travel with the state dict
    other = LogMel(FeatureConfig(normalize="global"))
    other.load_state_dict(feats.state_dict())
    torch.testing.assert_close(other(audio, torch.tensor([16000]))[0], x)


def test_bad_feature_config():
    with pytest.raises(ValueError, match="normalize"):
        FeatureConfig(normalize="cmvn")
