"""`asr train --init-from MODEL.pt`: matching weights loaded, a new vocabulary's output layer fresh, the source
model's features enforced, lower layers frozen for a number of steps."""

import lightning as L
import pytest
import torch
from conftest import TINY_MODEL

from asr.cli import main
from asr.model.file import load_model
from asr.training.config import ConfigError, load_config
from asr.training.ctc_module import CTCModule
from asr.training.finetune import frozen_parameters, init_from
from asr.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def module_for(*overrides):
    config = load_config(None, [*TINY_MODEL, *overrides])
    return config, CTCModule.from_config(config)


def test_matching_weights_are_all_loaded(trained_model):
    source = load_model(trained_model / "model.pt").model.state_dict()
    config, module = module_for()
    report = init_from(module.model, module.tokenizer, config, trained_model / "model.pt")
    assert report.not_loaded == {} and not report.vocabulary_changed
    for name, tensor in module.model.state_dict().items():
        assert torch.equal(tensor, source[name]), name


def test_a_different_vocabulary_gets_a_fresh_output_layer_and_keeps_the_rest(trained_model, caplog):
    caplog.set_level("INFO", logger="asr")
    source = load_model(trained_model / "model.pt").model.state_dict()
    # the same size, other letters: the output rows would mean other tokens, so they are not copied
    config, module = module_for('tokenizer.alphabet=" abcdefghijklmnopqrstuvwxy0\'"')
    report = init_from(module.model, module.tokenizer, config, trained_model / "model.pt")
    assert report.vocabulary_changed and len(module.tokenizer) == len(load_model(trained_model / "model.pt").tokenizer)
    assert set(report.not_loaded) == {"encoder.head.weight", "encoder.head.bias"}
    assert "output layer re-initialised: the vocabulary differs" in report.not_loaded["encoder.head.weight"]
    assert not torch.equal(module.model.encoder.head.weight, source["encoder.head.weight"])
    assert torch.equal(
        module.model.encoder.layers[0].forward_cell.weight_ih_l0, source["encoder.layers.0.forward_cell.weight_ih_l0"]
    )
    assert "not loaded (fresh initialisation): encoder.head.weight" in caplog.text


def test_a_feature_mismatch_is_an_error_that_names_the_settings(trained_model):
    config, module = module_for("features.n_mels=40")
    with pytest.raises(ConfigError, match=r"features.n_mels: config 40, model 80.*features.n_mels=80"):
        init_from(module.model, module.tokenizer, config, trained_model / "model.pt")


def test_other_dimensions_load_what_fits_and_nothing_fitting_is_an_error(trained_model):
    config, module = module_for("model.hidden_size=8")  # the front-end still fits, the recurrent layers do not
    report = init_from(module.model, module.tokenizer, config, trained_model / "model.pt")
    assert "encoder.frontend.convs.0.weight" in report.loaded
    why = report.not_loaded["encoder.layers.0.forward_cell.weight_hh_l0"]
    assert why == "shape (96, 24) in the source, (32, 8) here"
    config, module = module_for("model.hidden_size=8", "model.conv_channels=2")
    with pytest.raises(ConfigError, match="none of its weights fit this config's model"):
        init_from(module.model, module.tokenizer, config, trained_model / "model.pt")


def test_init_from_a_file_that_is_not_a_model(tiny_corpus, tmp_path, capsys):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a model\n")
    rc = main(
        [
            "train",
            "--train-manifest",
            str(tiny_corpus["train"]),
            "--val-manifest",
            str(tiny_corpus["dev"]),
            "--output-dir",
            str(tmp_path / "exp"),
            "--init-from",
            str(bogus),
            *TINY_MODEL,
        ]
    )
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"asr: error: {bogus}: not an asr model file")


def test_freeze_layers_counts_from_the_front_end():
    _, module = module_for("model.num_layers=2")
    assert all(n.startswith("encoder.frontend.") for n in frozen_parameters(module.model, 1))
    two = frozen_parameters(module.model, 2)
    assert any(n.startswith("encoder.layers.0.") for n in two) and not any("layers.1." in n for n in two)
    with pytest.raises(ConfigError, match="at most 3"):
        frozen_parameters(module.model, 4)


class Snapshots(L.Callback):
    """The front-end's and the output layer's weights after every optimizer step."""

    def __init__(self):
        self.frontend: list[torch.Tensor] = []
        self.head: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.frontend.append(pl_module.model.encoder.frontend.convs[0].weight.detach().clone())
        self.head.append(pl_module.model.encoder.head.weight.detach().clone())


def test_fine_tuning_freezes_then_thaws_and_records_what_it_loaded(trained_model, tiny_corpus, tmp_path):
    source = load_model(trained_model / "model.pt").model.state_dict()
    config = load_config(
        None,
        [
            *TINY_MODEL,
            "optim.freeze_layers=1",
            "optim.freeze_steps=2",
            "trainer.max_steps=4",
            "optim.lr=0.01",
            "data.max_batch_seconds=8",
        ],
    )
    snaps = Snapshots()
    path = train(
        config,
        str(tiny_corpus["train"]),
        str(tiny_corpus["dev"]),
        tmp_path,
        callbacks=[snaps],
        init_from=trained_model / "model.pt",
    )
    start = source["encoder.frontend.convs.0.weight"]
    assert torch.equal(snaps.frontend[0], start) and torch.equal(snaps.frontend[1], start)  # frozen: steps 0, 1
    assert not torch.equal(snaps.frontend[3], start)  # thawed at step 2
    assert not torch.equal(snaps.head[0], source["encoder.head.weight"])  # the rest trains from the first step
    meta = load_model(path).metadata
    assert meta["init_from"]["loaded"] > 0 and meta["init_from"]["not_loaded"] == {}
    assert meta["config"]["optim"]["lr"] == 0.01
