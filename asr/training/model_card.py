"""The model card ``asr train`` writes (:mod:`asr.model.card`): the data's summary, the validation figures and
confidence of the final weights, what it was fine-tuned from."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Sequence

import torch

from asr import __version__
from asr.data.manifest import Utterance
from asr.errors import ASRError
from asr.model.card import build_card, card_of, dataset_summary
from asr.training.config import Config
from asr.training.ctc_module import CTCModule


def card_name_of(path: str | os.PathLike | None) -> str | None:
    """The name on the source model's card (``--init-from``), else its file name."""
    if path is None:
        return None
    from asr.model.file import load_model

    try:
        card = card_of(load_model(path).metadata)
    except ASRError:
        card = None
    return str(card["name"]) if card and card.get("name") else os.path.basename(str(path))


@torch.no_grad()
def validation_confidence(module: CTCModule, utterances: Sequence[Utterance], max_utterances: int = 200, seed: int = 0):
    """The final model's confidence profile on (a seeded sample of) the validation set, for the model card
    (:func:`asr.evaluation.confidence.confidence_profile`, the measure ``asr transcribe`` compares with)."""
    from asr.evaluation.confidence import confidence_profile
    from asr.model.file import LoadedModel

    chosen = sorted(random.Random(seed).sample(range(len(utterances)), min(max_utterances, len(utterances))))
    if not chosen:
        return None
    was_training = module.model.training
    module.model.eval()
    try:
        loaded = LoadedModel(module.model, module.tokenizer, {})
        return confidence_profile(loaded, [utterances[i].audio_filepath for i in chosen])
    finally:
        module.model.train(was_training)


def model_card(
    config: Config,
    out: Path,
    train_set: tuple[str, Sequence[Utterance]],
    val_set: tuple[str, Sequence[Utterance]],
    val_wer: float | None,
    val_cer: float | None,
    confidence: dict | None,
    pretrained_from: str | None,
    commit: str | None,
) -> dict:
    """The card ``asr train`` stores in ``model.pt`` and writes as ``MODEL_CARD.md`` (:mod:`asr.model.card`)."""
    c = config.card
    return build_card(
        name=c.name or out.resolve().name,
        train=[dataset_summary(*train_set)],
        validation=dataset_summary(*val_set),
        domain=c.domain,
        data_licence=c.data_licence,
        description=c.description,
        val_wer=val_wer,
        val_cer=val_cer,
        confidence=confidence,
        pretrained_from=pretrained_from,
        version=__version__,
        commit=commit,
    )
