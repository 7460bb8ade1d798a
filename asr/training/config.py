"""Training configuration: small dataclasses, one per YAML section, each mapping 1:1 to what it configures.

A YAML file has the sections ``features``, ``model``, ``tokenizer``, ``data``, ``augment``, ``optim``,
``trainer`` and ``card``; a missing section or key keeps its default, an unknown one is an error that names the file and
suggests the closest known key. Command-line overrides use the same dotted names: ``model.hidden_size=512``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from asr.data.tokenizer import DEFAULT_ALPHABET, TokenizerConfig  # noqa: F401  (a config section)
from asr.errors import ConfigError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)
from asr.model.features import FeatureConfig
from asr.model.network import ModelDimensions

DEFAULT_WARMUP = 0.05  # optim.warmup when neither it nor optim.warmup_steps is set
# Keys that are two forms of one setting: an override of one replaces the other one (file or earlier override).
ALTERNATIVES = {("optim", "warmup"): ("optim", "warmup_steps"), ("optim", "warmup_steps"): ("optim", "warmup")}


@dataclass
class DataConfig:
    # Batches are filled up to this many seconds of padded audio (duration bucketing). "auto": on a GPU, the
    # largest budget whose training step fits in memory (asr.training.batch_sizing, probed at the start of training; under
    # DDP the smallest of the ranks'), with optim.lr scaled by sqrt(budget / reference_batch_seconds); on a CPU,
    # reference_batch_seconds itself.
    max_batch_seconds: float | str = 240.0
    # The batch (padded seconds) that optim.lr was tuned at: the reference of the learning-rate scaling, and the
    # CPU fallback of max_batch_seconds: auto (which needs it).
    reference_batch_seconds: float | None = None
    # auto only: the budget is capped so that an epoch keeps at least this many optimizer steps (over all ranks
    # and accumulation). Memory alone would give a small corpus a handful of steps per epoch on a large GPU (the
    # 3 h synth corpus, 10,638 s, is smaller than the 16,551-s batch probed on an H100 for the larger 100 h
    # model), and a run of a fixed number of epochs would
    # then barely train; the square-root learning-rate rule cannot make up a 100x smaller number of updates.
    auto_min_steps_per_epoch: int = 100
    max_batch_size: int | None = None
    # How far (relative to its duration) an utterance may move in the sorted order when shuffling.
    shuffle_window: float = 0.02
    # SortaGrad (DeepSpeech 2): the first epoch in ascending duration order.
    sortagrad: bool = False
    # Longer utterances are skipped (and counted), so one outlier cannot run the GPU out of memory.
    max_duration: float = 30.0
    num_workers: int = 2
    pin_memory: bool = True
    # Train from tar shards in NeMo's layout (asr shard): their URLs, with brace ranges, e.g.
    # "data/shards/audio_{0..127}.tar"; local paths, http(s):// or "pipe:aws s3 cp s3://b/audio_0.tar -" (one
    # string, or a list). The training manifest is then their shard manifest (tarred_audio_manifest.json).
    # Every DataLoader worker of every rank reads whole shards of its own (asr.data.shard_stream).
    train_shards: str | list[str] | None = None
    # Utterances a shard reader holds in its shuffle buffer; batches are cut by duration from it. Larger mixes
    # more shards per batch and pads less, and holds more compressed audio in each worker's memory.
    shard_buffer: int = 1000
    # false: every shard reader (DataLoader worker of a rank) has shards of its own, and every utterance is
    # trained on exactly once per epoch. true: each epoch every reader draws its share of shards anew, at random
    # and independently of the others (webdataset's resampled=True, NeMo's shard_strategy: replicate): some
    # utterances twice, some not at all in an epoch, and fewer shards than readers are fine.
    shard_resample: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_batch_seconds, str):
            if self.max_batch_seconds != "auto":
                raise ValueError(
                    f"data.max_batch_seconds must be a number of seconds or 'auto', got {self.max_batch_seconds!r}"
                )
            if self.reference_batch_seconds is None:
                raise ValueError(
                    "data.max_batch_seconds: auto needs data.reference_batch_seconds, the batch "
                    "(padded seconds) optim.lr was tuned at: the learning rate is scaled from it, "
                    "and a CPU trains with it"
                )
        elif not self.max_batch_seconds > 0:
            raise ValueError(f"data.max_batch_seconds must be positive, got {self.max_batch_seconds}")
        if self.shard_buffer < 1:
            raise ValueError(f"data.shard_buffer must be 1 or more, got {self.shard_buffer}")
        if self.auto_min_steps_per_epoch < 1:
            raise ValueError(f"data.auto_min_steps_per_epoch must be 1 or more, got {self.auto_min_steps_per_epoch}")
        if self.reference_batch_seconds is not None and not self.reference_batch_seconds > 0:
            raise ValueError(f"data.reference_batch_seconds must be positive, got {self.reference_batch_seconds}")


@dataclass
class AugmentConfig:
    spec_augment: bool = True
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 5
    # Widest time mask as a fraction of each utterance's length (adaptive SpecAugment).
    time_width: float = 0.05
    speed_perturb: bool = False
    speed_factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    # Vocal tract length perturbation: each utterance's frequency axis warped by a factor drawn from this range.
    vtlp: bool = False
    vtlp_factors: list[float] = field(default_factory=lambda: [0.9, 1.1])
    noise_manifest: str | None = None
    noise_prob: float = 0.5
    noise_snr_db: list[float] = field(default_factory=lambda: [5.0, 25.0])
    # --- what real recordings carry (asr/training/augment.py, docs/augmentation.md): each is off at prob 0 and
    # is applied in this order, after speed perturbation: pauses, silence padding, room, babble, coloured noise,
    # the noise manifest, gain, telephone line.
    # Share of batches given digital silence before and after every utterance: a lead-in and a tail drawn from
    # silence_seconds once per batch (so all rows grow alike and no compute goes to padding), their sum split at
    # random between the two sides of each utterance.
    silence_prob: float = 0.0
    silence_seconds: list[float] = field(default_factory=lambda: [0.0, 1.0])
    # Share of batches whose utterances get 1 to pause_count pauses inside, at their quietest 10-ms frames
    # (between words); count and lengths drawn once per batch, places per utterance.
    pause_prob: float = 0.0
    pause_count: int = 2
    pause_seconds: list[float] = field(default_factory=lambda: [0.1, 0.6])
    # Share of utterances convolved with a synthetic room impulse response (exponentially decaying noise): RT60
    # in seconds and direct-to-reverberant ratio in dB drawn from these ranges.
    reverb_prob: float = 0.0
    reverb_rt60: list[float] = field(default_factory=lambda: [0.2, 0.8])
    reverb_drr_db: list[float] = field(default_factory=lambda: [0.0, 10.0])
    # Share of utterances mixed with 1 to babble_voices other utterances of the same batch, at an SNR (dB) from
    # babble_snr_db.
    babble_prob: float = 0.0
    babble_snr_db: list[float] = field(default_factory=lambda: [5.0, 20.0])
    babble_voices: int = 3
    # Share of utterances given synthetic 1/f**beta noise (beta from coloured_noise_exponent: 0 white, 1 pink,
    # 2 brown) at an SNR (dB) from coloured_noise_snr_db, over silence padding and pauses too. No noise files.
    coloured_noise_prob: float = 0.0
    coloured_noise_snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])
    coloured_noise_exponent: list[float] = field(default_factory=lambda: [0.0, 2.0])
    # Share of utterances given a recording level (dB) from gain_db; what passes full scale clips.
    gain_prob: float = 0.0
    gain_db: list[float] = field(default_factory=lambda: [-20.0, 10.0])
    # Share of utterances sent through a telephone line: 8 kHz, 300-3400 Hz, 8-bit mu-law.
    telephone_prob: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") and not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{f.name} is a share of utterances, in [0, 1]; got {value}")
            if f.name in RANGES and (len(value) != 2 or value[0] > value[1] or value[0] < RANGES[f.name]):
                raise ValueError(
                    f"augment.{f.name} must be a range [low, high] with {RANGES[f.name]} <= low <= high; got {value}"
                )
        if self.pause_count < 1 or self.babble_voices < 1:
            raise ValueError(
                f"augment.pause_count and augment.babble_voices must be 1 or more; got {self.pause_count} and "
                f"{self.babble_voices}"
            )
        if self.reverb_rt60[0] <= 0:
            raise ValueError(f"augment.reverb_rt60 must be positive seconds; got {self.reverb_rt60}")


# Lowest value allowed at the low end of each range of AugmentConfig.
RANGES = {
    "silence_seconds": 0.0,
    "pause_seconds": 0.0,
    "reverb_rt60": 0.0,
    "reverb_drr_db": -float("inf"),
    "babble_snr_db": -float("inf"),
    "coloured_noise_snr_db": -float("inf"),
    "coloured_noise_exponent": 0.0,
    "gain_db": -float("inf"),
}


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    # Linear warm-up over this FRACTION of the run (0.05: the first 5 %), the run measured as the cosine measures
    # it: optimizer steps or training time, whichever is further along. The same config then warms up for 5 % of
    # the run on 1 k or 1 M utterances. Default 0.05 when warmup_steps is not set either.
    warmup: float | None = None
    # The older form: warm-up in optimizer steps, whatever the run's length (still read). Setting both in one
    # file is an error; an override of one of them replaces the other one (from the file or an earlier override).
    warmup_steps: int | None = None
    # cosine: warm-up, then cosine decay to lr * min_lr_ratio over the rest of the run (so the decay too is a
    # fraction of the run: it ends with the epochs, the steps or the time budget); constant: warm-up only.
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    # Fine-tuning (asr train --init-from): freeze the lowest layers, counted from the bottom (1: the convolutional
    # front-end; 2: it and the first recurrent layer; ...), for the first freeze_steps optimizer steps (-1: the
    # whole run). 0: nothing frozen.
    freeze_layers: int = 0
    freeze_steps: int = -1

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.warmup is not None and self.warmup_steps is not None:
            raise ValueError(
                f"optim.warmup ({self.warmup}, a fraction of the run) and optim.warmup_steps "
                f"({self.warmup_steps}, steps) are two forms of one setting: set only one"
            )
        if self.warmup is not None and not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"optim.warmup is a fraction of the run, in [0, 1); got {self.warmup}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be 0 or more, got {self.warmup_steps}")
        if self.freeze_layers < 0:
            raise ValueError(f"optim.freeze_layers must be 0 (none) or more, got {self.freeze_layers}")
        if self.freeze_steps < -1:
            raise ValueError(f"optim.freeze_steps must be -1 (the whole run) or 0 or more, got {self.freeze_steps}")

    @property
    def warmup_fraction(self) -> float | None:
        """The warm-up as a fraction of the run; None when it is given in steps (``warmup_steps``)."""
        if self.warmup_steps is not None:
            return None
        return DEFAULT_WARMUP if self.warmup is None else self.warmup


@dataclass
class TrainerConfig:
    # Epochs to train in all (a resumed run continues towards it); -1: no epoch cap (then max_minutes is needed).
    max_epochs: int = 30
    # Total training-time budget in minutes for the output folder, summed over resumes (the time trained is kept
    # in each checkpoint); the cosine schedule ends at it. Resuming with a larger value stretches the rest of
    # the schedule over the extra time, without raising the learning rate again.
    max_minutes: float | None = None
    # Stop after this many optimizer steps in all (-1: no step cap); mainly for tests and quick checks.
    max_steps: int = -1
    seed: int = 1234
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    # "auto": 16-mixed (fp16 + gradient scaler) on GPUs, bf16-mixed on CPUs with AMX, else 32-true; see
    # asr.training.precision.resolve_precision.
    precision: str = "auto"
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 20
    check_val_every_n_epoch: int = 1
    # Validate every this many minutes of training instead of at epoch ends (None: at epoch ends). An epoch is
    # a unit of the data, not of the run: on a corpus 10x larger a per-epoch validation comes once or twice in a
    # time-budgeted run (no best checkpoint to choose, no trend for early stopping or the still-falling
    # warning), and on one 10x smaller it costs a large share of the run. A clock interval fits every size.
    # A run always validates once more when it stops.
    val_check_minutes: float | None = None
    # Exponential moving average of the weights, exported as the final model (0 disables).
    ema_decay: float = 0.0
    # Export the mean of this many best checkpoints by val_wer instead of the single best (0 disables).
    average_checkpoints: int = 0
    # Early stopping: stop once val_wer has not improved by more than early_stopping_min_delta (absolute: 0.002
    # is 0.2 points) for this many validations in a row; 0 = off. The best checkpoint is what gets exported.
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0
    # Patience counts only from the first validation whose WER is below this (1.0: the model gets some word
    # right), so a run still on the all-blank plateau (100 % WER for the first part of a small corpus's run)
    # is never stopped for "not improving"; null counts from the first validation.
    early_stopping_below_wer: float | None = 1.0
    # ... and only once this share (0-1) of the schedule is behind the run (the learning-rate schedule's
    # position: steps or the time budget, whichever is further along).
    early_stopping_min_progress: float = 0.0
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.max_epochs < -1 or self.max_epochs == 0:
            raise ValueError(f"trainer.max_epochs must be positive, or -1 for no epoch cap; got {self.max_epochs}")
        if self.max_epochs == -1 and not self.max_minutes and self.max_steps < 0:
            raise ValueError(
                "trainer.max_epochs=-1 (no epoch cap) needs a time budget: set trainer.max_minutes "
                "(--max-minutes) or trainer.max_steps, or training would never end"
            )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"trainer.max_minutes must be positive, got {self.max_minutes}")
        if self.early_stopping_patience < 0 or self.early_stopping_min_delta < 0:
            raise ValueError(
                "trainer.early_stopping_patience (validations; 0 = off) and "
                "trainer.early_stopping_min_delta must be 0 or more"
            )
        if self.early_stopping_below_wer is not None and not self.early_stopping_below_wer > 0:
            raise ValueError(
                "trainer.early_stopping_below_wer must be a WER above 0 (1.0: 100 %), or null to count from "
                f"the first validation; got {self.early_stopping_below_wer}"
            )
        if not 0.0 <= self.early_stopping_min_progress < 1.0:
            raise ValueError(
                "trainer.early_stopping_min_progress is a share of the schedule, in [0, 1); got "
                f"{self.early_stopping_min_progress}"
            )
        if self.val_check_minutes is not None and not self.val_check_minutes > 0:
            raise ValueError(
                f"trainer.val_check_minutes must be positive (or unset: validate at epoch ends), "
                f"got {self.val_check_minutes}"
            )
        if self.average_checkpoints < 0:
            raise ValueError(f"trainer.average_checkpoints must be 0 (off) or more, got {self.average_checkpoints}")


@dataclass
class CardConfig:
    """What the model card (:mod:`asr.model.card`) says that the data cannot tell: ``asr train --domain`` and
    ``--data-licence`` set these too."""

    # The model's name on its card (default: the output folder's name), e.g. "synth-en-commands".
    name: str | None = None
    # What speech it was trained for, in a few words: "read English, close microphone", "synthetic espeak".
    domain: str | None = None
    # Licence of the training data (an SPDX name where there is one: CC-BY-4.0), which binds the weights too.
    data_licence: str | None = None
    # A sentence or two for the card's page.
    description: str | None = None


@dataclass
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelDimensions = field(default_factory=lambda: ModelDimensions(vocab_size=0))
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    card: CardConfig = field(default_factory=CardConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f for f in dataclasses.fields(Config)}


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 3e-4, without a dot, as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"{where}: unknown config key {key!r}{hint}")


def _build_section(name: str, values: dict[str, Any], where: str) -> Any:
    cls = _section_types()[name]
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: section {name!r} must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise _unknown(f"{name}.{key}", [f"{name}.{k}" for k in known], where)
        kwargs[key] = _coerce(value, hints[key], f"{where}: {name}.{key}")
    if name == "model":
        kwargs.setdefault("vocab_size", 0)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value); the value is read as YAML (numbers, true, lists...)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. model.hidden_size=512")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return section, key, value


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults), then apply ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    where = str(path) if path else "defaults"
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    merged: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise _unknown(section, list(SECTIONS), where)
        merged[section] = dict(values or {})
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in SECTIONS:
            raise _unknown(section, list(SECTIONS), f"override {text!r}")
        other = ALTERNATIVES.get((section, key))
        if other is not None:  # the other form, from the file or an earlier override, gives way
            merged.get(other[0], {}).pop(other[1], None)
        merged.setdefault(section, {})[key] = value
    return Config(**{name: _build_section(name, merged.get(name, {}), where) for name in SECTIONS})


def dump_config(config: Config, path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
