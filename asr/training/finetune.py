"""Starting a training run from a trained model (`asr train --init-from MODEL.pt`), and freezing its lower layers.

A model trained on a large or varied corpus (many synthetic voices, say) is a better start for a small one than
random weights, as deepspeech.pytorch's ``--finetune``, NeMo's ``init_from_nemo_model`` and ESPnet's
``--init_param`` offer. Every tensor of the new model whose name and shape match one in the source model is
copied; the others keep their fresh initialisation and are listed. The output layer is re-initialised whenever the
vocabularies differ, even at the same size: its rows mean tokens, and other tokens would inherit them.

The feature settings (sample rate, mel bins, normalisation, and the global statistics with ``normalize: global``)
are part of what the source model learned, so the config must agree with them: a mismatch is an error naming each
setting, not a silent change of the input the weights were trained on.

Freezing (``optim.freeze_layers``, ``optim.freeze_steps``) leaves the lowest layers as the source model learned
them while the new output layer and the upper layers adapt: their gradients are dropped before each optimizer step
(so AdamW neither moves nor decays them), which keeps every parameter in the optimizer and in DDP's gradient
all-reduce, and lets them thaw at a given step, also in a resumed run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from asr.model.file import load_model
from asr.model.network import ASRModel
from asr.training.config import Config, ConfigError

log = logging.getLogger("asr")

OUTPUT_LAYER = "encoder.head."


@dataclass
class InitReport:
    """What ``--init-from`` did: the tensors copied, and those left at their fresh initialisation (with why)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    not_loaded: dict[str, str] = field(default_factory=dict)  # name -> reason
    vocabulary_changed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": len(self.loaded),
            "not_loaded": dict(self.not_loaded),
            "output_layer_reinitialised": self.vocabulary_changed,
        }


def check_features(config: Config, source_features: Any, path: str) -> None:
    """The config's feature settings must be the source model's; raise a ConfigError listing every difference."""
    ours, theirs = dataclasses.asdict(config.features), dataclasses.asdict(source_features)
    diff = [k for k, v in theirs.items() if ours.get(k) != v]
    if diff:
        listed = "; ".join(f"features.{k}: config {ours.get(k)!r}, model {theirs[k]!r}" for k in diff)
        fix = " ".join(f"features.{k}={theirs[k]}" for k in diff)
        raise ConfigError(
            f"{path}: --init-from keeps the source model's feature settings, and the config differs "
            f"({listed}); set them in the config or as overrides: {fix}"
        )


def init_from(model: ASRModel, tokenizer: Any, config: Config, path: str | os.PathLike) -> InitReport:
    """Copy the weights of the model file ``path`` into ``model`` where names and shapes match (see the module
    docstring); raise ModelFileError for a file that is not a model, ConfigError for a feature mismatch or when
    not a single tensor fits."""
    path = str(path)
    source = load_model(path)
    check_features(config, source.model.feature_config, path)
    report = InitReport(path)
    report.vocabulary_changed = source.tokenizer.to_dict() != tokenizer.to_dict()
    theirs = source.model.state_dict()
    ours = model.state_dict()
    chosen: dict[str, torch.Tensor] = {}
    for name, tensor in ours.items():
        if name not in theirs:
            report.not_loaded[name] = "not in the source model"
        elif name.startswith(OUTPUT_LAYER) and report.vocabulary_changed:
            report.not_loaded[name] = (
                f"output layer re-initialised: the vocabulary differs "
                f"({len(source.tokenizer)} -> {len(tokenizer)} tokens)"
            )
        elif theirs[name].shape != tensor.shape:
            report.not_loaded[name] = f"shape {tuple(theirs[name].shape)} in the source, {tuple(tensor.shape)} here"
        else:
            chosen[name] = theirs[name]
            report.loaded.append(name)
    learned = [n for n in chosen if not n.startswith(("features.", OUTPUT_LAYER))]  # a bias alone is no start
    if not learned:
        raise ConfigError(
            f"{path}: none of its weights fit this config's model (e.g. {next(iter(report.not_loaded))}: "
            f"{next(iter(report.not_loaded.values()))}); --init-from needs the same model.* settings"
        )
    model.load_state_dict(chosen, strict=False)
    log.info("--init-from %s: loaded %d of %d tensors", path, len(report.loaded), len(ours))
    for name, why in report.not_loaded.items():
        log.info("--init-from: not loaded (fresh initialisation): %s: %s", name, why)
    return report


def frozen_parameters(model: ASRModel, layers: int) -> list[str]:
    """Names of the parameters ``optim.freeze_layers: layers`` freezes: counted from the bottom, 1 is the
    convolutional front-end, 2 adds the first recurrent layer, and so on (the output layer is never frozen)."""
    if layers <= 0:
        return []
    n_rnn = len(model.encoder.layers)
    if layers > n_rnn + 1:
        raise ConfigError(
            f"optim.freeze_layers={layers}, but the model has the front-end and {n_rnn} recurrent "
            f"layers below its output layer: at most {n_rnn + 1}"
        )
    prefixes = ["encoder.frontend."] + [f"encoder.layers.{i}." for i in range(layers - 1)]
    return [n for n, _ in model.named_parameters() if any(n.startswith(p) for p in prefixes)]
