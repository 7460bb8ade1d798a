"""The self-contained model file (``model.pt``): feature settings, tokenizer, dimensions and weights.

It holds only plain Python values and tensors, so it loads with ``torch.load(..., weights_only=True)``: opening
a model file can never execute code. ``format_version`` is bumped whenever the layout changes, and a file from
another version gets an error that says so instead of a confusing shape mismatch.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any

import torch

from asr import __version__
from asr.features import FeatureConfig
from asr.model import ASRModel, ModelDimensions
from asr.tokenizer import CharTokenizer

FORMAT = "asr-rnn-ctc"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a usable asr model; the message names the file and the reason."""


@dataclass
class LoadedModel:
    model: ASRModel
    tokenizer: CharTokenizer
    metadata: dict[str, Any]


def save_model(path: str | os.PathLike, model: ASRModel, tokenizer: CharTokenizer,
               metadata: dict[str, Any] | None = None) -> None:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    obj = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "asr_version": __version__,
        "features": dataclasses.asdict(model.feature_config),
        "model": dataclasses.asdict(model.dims),
        "tokenizer": tokenizer.to_dict(),
        "metadata": metadata or {},
        "state_dict": state,
    }
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    path = str(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: model file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: not an asr model file (cannot be loaded safely: {first})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        hint = ""
        if isinstance(obj, dict) and "pytorch-lightning_version" in obj:
            hint = " (this is a Lightning training checkpoint; pass the exported DIR/model.pt instead)"
        raise ModelFileError(f"{path}: not an asr model file{hint}")
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version} (written by asr {obj.get('asr_version', '?')}) "
            f"is not the version this asr {__version__} reads ({FORMAT_VERSION}); "
            "use the matching asr release or retrain")
    try:
        features = FeatureConfig(**obj["features"])
        dims = ModelDimensions(**obj["model"])
        tokenizer = CharTokenizer.from_dict(obj["tokenizer"])
        model = ASRModel(dims, features, compute_filterbank=False)  # the saved filterbank is loaded below
        model.load_state_dict(obj["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: model file is damaged or inconsistent ({str(e).splitlines()[0][:300]})") from None
    model.to(device).eval()
    return LoadedModel(model, tokenizer, dict(obj.get("metadata", {})))
