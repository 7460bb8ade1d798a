import itertools

import pytest
import torch

from asr.data.tokenizer import CharTokenizer
from asr.decoding.greedy import greedy_decode, greedy_ids
from asr.model.features import FeatureConfig
from asr.model.network import ASRModel, ModelDimensions


def make(cell="lstm", bidirectional=True, subsampling=2, hidden=32, layers=2, lookahead=0, normalize=None):
    torch.manual_seed(0)
    dims = ModelDimensions(
        vocab_size=29,
        cell=cell,
        hidden_size=hidden,
        num_layers=layers,
        bidirectional=bidirectional,
        dropout=0.0,
        subsampling=subsampling,
        conv_channels=8,
        lookahead_frames=lookahead,
    )
    features = FeatureConfig(n_mels=40) if normalize is None else FeatureConfig(n_mels=40, normalize=normalize)
    return ASRModel(dims, features).eval()


@pytest.mark.parametrize("cell,bidirectional", list(itertools.product(["rnn", "lstm", "gru"], [False, True])))
def test_shapes_and_padding_invariance(cell, bidirectional):
    for sub in (1, 2, 3, 4):
        model = make(cell, bidirectional, sub)
        audio = torch.randn(3, 16000)
        lengths = torch.tensor([16000, 9000, 4321])
        with torch.no_grad():
            log_probs, out_lens = model(audio, lengths)
            assert log_probs.shape[0] == 3 and log_probs.shape[2] == 29
            assert out_lens.tolist() == model.output_lengths(lengths).tolist()
            assert log_probs.shape[1] == out_lens.max()
            torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
            for i in (1, 2):
                alone, n = model(audio[i : i + 1, : lengths[i]], lengths[i : i + 1])
                assert n.item() == out_lens[i].item()
                torch.testing.assert_close(log_probs[i, : n.item()], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lookahead", [1, 4])
def test_lookahead_layer_is_padding_proof_and_reads_only_k_frames_ahead(lookahead):
    model = make("gru", bidirectional=False, subsampling=3, lookahead=lookahead, normalize="none")
    with torch.no_grad():  # a look-ahead that is not the identity it starts as
        model.encoder.lookahead.weight.normal_()
    audio = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 7001])
    with torch.no_grad():
        log_probs, out_lens = model(audio, lengths)
        alone, n = model(audio[1:, :7001], lengths[1:])
        torch.testing.assert_close(log_probs[1, : n.item()], alone[0], atol=1e-5, rtol=1e-5)
        # Output t depends on frames up to t + k and no further: changing the audio after ~frame 20 + k leaves
        # the frames before 20 alone, and changes frame 20 - k onwards (k frames early, not more).
        frame = model.frame_samples
        changed = audio.clone()
        changed[0, 20 * frame :] = torch.randn(16000 - 20 * frame)
        other, _ = model(changed, lengths)
    differs = (other[0] - log_probs[0]).abs().amax(-1) > 1e-6
    first = int(differs.nonzero()[0])
    assert 20 - lookahead - 2 <= first <= 20 - lookahead  # 2: the conv front-end's own frames of context
    assert model.lookahead_seconds == pytest.approx(lookahead * 0.03)


def test_lookahead_starts_as_the_identity():
    a, b = make(bidirectional=False, lookahead=0), make(bidirectional=False, lookahead=3)
    b.load_state_dict({**a.state_dict(), "encoder.lookahead.weight": b.encoder.lookahead.weight}, strict=True)
    audio = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(a(audio, torch.tensor([8000]))[0], b(audio, torch.tensor([8000]))[0])


def test_subsampling_factor():
    lengths = torch.tensor([160 * 100])
    assert make(subsampling=1).output_lengths(lengths).item() == 101
    assert make(subsampling=2).output_lengths(lengths).item() == 51
    assert make(subsampling=3).output_lengths(lengths).item() == 34
    assert make(subsampling=4).output_lengths(lengths).item() == 26
    assert make(subsampling=6).output_lengths(lengths).item() == 17
    assert make(subsampling=8).output_lengths(lengths).item() == 13


@pytest.mark.parametrize("subsampling", [6, 8])
def test_coarse_frame_rates_for_word_pieces(subsampling):
    """6 and 8 (for BPE targets): the forward pass emits exactly the frames output_lengths promises, per item."""
    model = make(subsampling=subsampling, layers=1).eval()
    lengths = torch.tensor([16000, 9000, 4000])
    audio = torch.randn(3, 16000) * 0.1
    with torch.no_grad():
        log_probs, out_lens = model(audio, lengths)
    assert out_lens.tolist() == model.output_lengths(lengths).tolist()
    assert log_probs.shape[1] == out_lens[0].item() == {6: 17, 8: 13}[subsampling]  # 1 s: 101 feature frames


def test_bad_dimensions():
    with pytest.raises(ValueError, match="cell"):
        ModelDimensions(vocab_size=29, cell="transformer")
    with pytest.raises(ValueError, match="subsampling"):
        ModelDimensions(vocab_size=29, subsampling=5)
    for bad in (-1, 65, 1.5, True):
        with pytest.raises(ValueError, match="model.lookahead_frames"):
            ModelDimensions(vocab_size=29, lookahead_frames=bad)


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    tok = CharTokenizer()
    a, b, space = tok.encode("a")[0], tok.encode("b")[0], tok.encode("a b")[1]
    frames = [a, a, 0, a, b, b, space, 0, b, 0]
    lp = torch.full((1, len(frames), len(tok)), -10.0)
    lp[0, torch.arange(len(frames)), torch.tensor(frames)] = 0.0
    assert greedy_ids(lp, torch.tensor([len(frames)])) == [[a, a, b, space, b]]
    assert greedy_decode(lp, torch.tensor([len(frames)]), tok) == ["aab b"]
    # frames past the length are ignored
    assert greedy_decode(lp, torch.tensor([3]), tok) == ["a"]


def test_overfits_a_tiny_batch():
    """A model that can learn: 4 random 'utterances' memorised to zero character errors."""
    torch.manual_seed(0)
    tok = CharTokenizer()
    texts = ["yes", "no go", "stop it", "left"]
    model = make("lstm", True, 2, hidden=64, layers=1).train()
    audio = torch.randn(4, 12000)
    lengths = torch.tensor([12000, 10000, 12000, 8000])
    targets = [torch.tensor(tok.encode(t)) for t in texts]
    tgt = torch.nn.utils.rnn.pad_sequence(targets, batch_first=True)
    tgt_lens = torch.tensor([len(t) for t in targets])
    ctc = torch.nn.CTCLoss(zero_infinity=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        log_probs, out_lens = model(audio, lengths)
        loss = ctc(log_probs.transpose(0, 1), tgt, out_lens, tgt_lens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            if greedy_decode(log_probs, out_lens, tok) == texts:
                break
    model.eval()
    with torch.no_grad():
        log_probs, out_lens = model(audio, lengths)
    assert greedy_decode(log_probs, out_lens, tok) == texts


def test_lr_schedule_follows_steps_or_time_whichever_is_further():
    from asr.training.ctc_module import lr_lambda

    assert lr_lambda(0, 10, 100, "cosine", 0.05) == pytest.approx(0.1)
    assert lr_lambda(10, 10, 100, "cosine", 0.05) == pytest.approx(1.0)
    assert lr_lambda(100, 10, 100, "cosine", 0.05) == pytest.approx(0.05)
    assert lr_lambda(55, 10, 100, "cosine", 0.05) == pytest.approx(0.525)
    # a wall-clock budget nearly spent drags the schedule to its end before the steps get there
    assert lr_lambda(20, 10, 100, "cosine", 0.05, time_fraction=1.0) == pytest.approx(0.05)
    assert lr_lambda(55, 10, 100, "cosine", 0.05, time_fraction=0.1) == pytest.approx(0.525)
    assert lr_lambda(20, 10, 100, "constant", 0.05, time_fraction=0.9) == 1.0
