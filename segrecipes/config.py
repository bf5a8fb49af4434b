"""One typed, validated configuration for a training run.

Every section is a pydantic model with ``extra="forbid"`` so typos are refused; ``load_config``
merges a recipe preset, an optional YAML file and ``--set section.key=value`` overrides, and turns
every validation problem into a one-line :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from segrecipes.data.settings import DataSettings
from segrecipes.duration import Duration
from segrecipes.engine.settings import TrainSettings
from segrecipes.errors import ConfigError
from segrecipes.evaluation.options import InferenceOptions
from segrecipes.fields import BatchesField, DurationField, IntervalField, Section
from segrecipes.models.settings import ModelSettings
from segrecipes.transfer import LRScaling, TimeUnit, carry_over, lr_factor

__all__ = ["ConfigError", "Duration", "RunConfig", "build_config", "load_config"]

RECIPE_DIR = Path(__file__).parent / "recipes"


class OptimizerConfig(Section):
    """SGDW is the reference: decoupled weight decay scaled by lr_t / lr_0 (SPEC §2). ``lr: auto`` runs
    the learning-rate range test at the start of the run and records the rate it suggests here."""

    name: Literal["sgdw", "sgd", "adamw"] = "sgdw"
    lr: float | Literal["auto"] = 0.08
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-5, ge=0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only
    backbone_lr_mult: float = Field(1.0, ge=0)  # the backbone's learning rate relative to the head's
    norm_weight_decay: float | None = Field(None, ge=0)  # for norm layers and biases (None: weight_decay)

    @field_validator("lr", mode="before")
    @classmethod
    def _check_lr(cls, value: Any) -> Any:
        if value == "auto":
            return value
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number > 0 or 'auto'") from None
        if not 0 < rate < math.inf or isinstance(value, bool):
            raise ValueError("expected a number > 0 or 'auto'")
        return rate


class ScheduleConfig(Section):
    name: Literal["cosine", "poly", "constant"] = "cosine"
    warmup: IntervalField = None
    power: float = Field(0.9, gt=0)
    final_lr_ratio: float = Field(0.0, ge=0, le=1)


class LossConfig(Section):
    """A named loss (``ce``, or the reference ``dice_ce``); a weight set here replaces the name's."""

    name: Literal["ce", "dice_ce"] = "ce"
    ce_weight: float | None = Field(None, ge=0)
    dice_weight: float | None = Field(None, ge=0)
    # per class, or "auto" (median-frequency balancing from the training split's pixel counts); cross-entropy only
    class_weights: list[float] | Literal["auto"] | None = None

    @field_validator("class_weights")
    @classmethod
    def _check_weights(cls, value: list[float] | str | None) -> list[float] | str | None:
        if isinstance(value, list) and (not value or min(value) < 0 or max(value) == 0):
            raise ValueError("class weights must be >= 0, one per class, not all 0")
        return value


class EMAConfig(Section):
    """Exponential moving average of weights and buffers; smoothing = 2^(-interval / half_life), both
    resolved to batches for the run. ``warmup``: a bias-corrected average, in which the initial weights
    fade within a few updates instead of several half-lives."""

    enabled: bool = False
    half_life: BatchesField = Duration(1000, "ba")
    update_interval: BatchesField = Duration(10, "ba")
    smoothing: float | None = Field(None, gt=0, lt=1)
    warmup: bool = False


class ChannelsLastConfig(Section):
    enabled: bool = False


class MixUpConfig(Section):
    enabled: bool = False
    alpha: float = Field(0.2, gt=0)


class SAMConfig(Section):
    enabled: bool = False
    rho: float = Field(0.3, gt=0)
    interval: BatchesField = Duration(1, "ba")  # a ratio of steps (every 2nd), not a time constant: never carried over
    epsilon: float = Field(1e-12, gt=0)


# the method constants counted in steps (never in seconds)
METHOD_CONSTANTS = (("ema", "half_life"), ("ema", "update_interval"), ("sam", "interval"))
# the sections that switch a training method on (the order the hooks run in is the methods' own)
METHOD_SECTIONS = ("ema", "channels_last", "mixup", "sam")
# --methods names that are not methods but settings: kept because the first release accepted them
METHOD_ALIASES = {"dice": {"loss": {"name": "dice_ce"}}}


class RecipeConfig(Section):
    """The preset a run started from and the reference run its constants were tuned on.

    ``transfer: scaled`` carries the preset's learning rate and time constants over to this run's
    batch size, dataset and duration (:mod:`segrecipes.transfer`); ``none`` keeps them as written."""

    name: str | None = None
    transfer: Literal["scaled", "none"] = "none"
    reference_train_size: int | None = Field(None, gt=0)
    reference_batch_size: int | None = Field(None, gt=0)
    reference_duration: DurationField | None = None
    lr_scaling: LRScaling = "linear"
    time_unit: TimeUnit = "dur"

    @model_validator(mode="after")
    def _check_reference(self) -> RecipeConfig:
        if self.transfer == "scaled":
            missing = [key for key in ("reference_train_size", "reference_batch_size", "reference_duration")
                       if getattr(self, key) is None]
            if missing:
                raise ValueError(f"transfer 'scaled' needs recipe.{missing[0]} (the run the constants were tuned on)")
            if self.reference_duration.unit not in ("ba", "ep", "sp"):  # type: ignore[union-attr]
                raise ValueError("recipe.reference_duration must be in batches, epochs or samples")
        return self


def moved_keys(layer: Any) -> Any:
    """One layer of config (a preset, a file, an override, a saved run's config) with the keys of earlier
    releases where they are now: ``data.eval_size`` (up to 0.2, still accepted) is the protocol size
    ``eval.size``. Applied to each layer before they are merged, so that the later layer still wins."""
    if not isinstance(layer, dict) or not isinstance(layer.get("data"), dict) or "eval_size" not in layer["data"]:
        return layer
    data = {key: value for key, value in layer["data"].items() if key != "eval_size"}
    evaluation = layer.get("eval") if isinstance(layer.get("eval"), dict) else {}
    return {**layer, "data": data, "eval": {"size": layer["data"]["eval_size"], **evaluation}}


def _recipe_section(value: Any) -> Any:
    """A recipe given by name (``recipe: mild``, as the first release wrote it) is its section."""
    if value is None or isinstance(value, str):
        return {"name": value}
    return value


class RunConfig(Section):
    """The whole run; every section can be overridden with ``--set section.key=value``."""

    recipe: RecipeConfig = RecipeConfig()
    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainSettings = TrainSettings()
    loss: LossConfig = LossConfig()
    ema: EMAConfig = EMAConfig()
    channels_last: ChannelsLastConfig = ChannelsLastConfig()
    mixup: MixUpConfig = MixUpConfig()
    sam: SAMConfig = SAMConfig()
    eval: InferenceOptions = InferenceOptions()

    _recipe_by_name = field_validator("recipe", mode="before")(_recipe_section)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        return moved_keys(data)

    @model_validator(mode="after")
    def _check_method_constants(self) -> RunConfig:
        """Methods count steps, so that every rank and every resume take the same ones: refuse a time."""
        timed = (self.train.dur_base or self.train.duration).unit == "s"
        for name, key in METHOD_CONSTANTS:
            value = getattr(getattr(self, name), key)
            if getattr(self, name).enabled and (value.unit == "s" or (value.unit == "dur" and timed)):
                what = "is wall-clock time" if value.unit == "s" else "is a share of a wall-clock run"
                raise ValueError(f"{name}.{key}: {value} {what}; give it in ba, ep, sp or dur of a run counted in "
                                 "steps")
        return self

    def enabled_methods(self) -> list[str]:
        return [name for name in METHOD_SECTIONS if getattr(self, name).enabled]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self.model_dump())


def _plain(value: Any) -> Any:
    """Turn a dump into YAML-friendly builtins (tuples as lists)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def available_recipes() -> dict[str, str]:
    """Recipe name -> its one-line purpose (the first comment line of the preset file)."""
    recipes = {}
    for path in sorted(RECIPE_DIR.glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        recipes[path.stem] = first.lstrip("# ").strip()
    return recipes


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def recipe_dict(name: str) -> dict[str, Any]:
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.exists():
        names = sorted(available_recipes())
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (available: {', '.join(names)})"
        raise ConfigError(f"unknown recipe {name!r}{hint}")
    data = _read_yaml(path)
    data["recipe"] = {**data.get("recipe", {}), "name": name}
    return data


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, section by section (the later layer wins)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``section.key=value`` -> nested dict; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = value
    for key in reversed(keys):
        nested = {key: nested}
    return nested


def _fields_at(location: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = RunConfig
    for key in location[:-1]:
        field = model.model_fields.get(str(key))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _format_error(error: ValidationError, source: str, within: tuple[Any, ...] = ()) -> str:
    first = error.errors()[0]
    cause = getattr(first.get("ctx", {}).get("error"), "__cause__", None)
    if isinstance(cause, ValidationError):  # a section's own one-line error (PythonSection): word its cause
        return _format_error(cause, source, (*within, *first["loc"]))
    location = within + tuple(part for part in first["loc"] if not isinstance(part, int) or len(first["loc"]) == 1)
    key = ".".join(str(part) for part in location) or "config"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(location[-1]), _fields_at(location), n=1)
        hint = f" (did you mean {'.'.join([*map(str, location[:-1]), close[0]])!r}?)" if close else ""
        return f"{source}: unknown key {key!r}{hint}"
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    if not location:  # a check across keys: its message names them
        return f"{source}: {message}{shown}"
    return f"{source}: {key}: {message}{shown}"


def build_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_error(error, source)) from None


# (section, key) of every constant carried over by recipe.transfer=scaled, besides the learning rate
TIME_CONSTANTS = (("ema", "half_life"), ("ema", "update_interval"), ("schedule", "warmup"))


def load_config(
    recipe: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    methods: list[str] | tuple[str, ...] = (),
) -> RunConfig:
    """Preset, then YAML file, then ``--methods`` switches, then ``--set`` overrides (last wins); then
    the preset's constants that the file and overrides left alone are carried over (``recipe.transfer``)."""
    preset: dict[str, Any] = moved_keys(recipe_dict(recipe)) if recipe else {}
    source = f"recipe {recipe!r}" if recipe else "config"
    user: dict[str, Any] = {}
    if config_file is not None:
        user = moved_keys(_read_yaml(Path(config_file)))
        if "recipe" in user:  # `recipe: mild`, as the first release wrote it, must not replace the preset's section
            user["recipe"] = _recipe_section(user["recipe"])
        source = str(config_file)
        build_config(merge_dicts(preset, user), source)
    known = [*METHOD_SECTIONS, *METHOD_ALIASES]
    for method in methods:
        if method not in known:
            close = difflib.get_close_matches(method, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (available: {', '.join(known)})"
            raise ConfigError(f"--methods: unknown method {method!r}{hint}")
        user = merge_dicts(user, METHOD_ALIASES.get(method, {method: {"enabled": True}}))
    for override in overrides:
        user = merge_dicts(user, moved_keys(parse_override(override)))
        build_config(merge_dicts(preset, user), f"--set {override}")
    return transferred(build_config(merge_dicts(preset, user), source), user)


def transferred(config: RunConfig, user: dict[str, Any]) -> RunConfig:
    """``config`` with the constants not in ``user`` carried over to its batch size and time unit, and
    the EMA warmup on (beyond the reference: the literal presets keep it off)."""
    section = config.recipe
    if section.transfer != "scaled":
        return config
    given = {(name, key) for name, values in user.items() if isinstance(values, dict) for key in values}
    timed = config.train.duration.unit == "s"
    update: dict[str, dict[str, Any]] = {}
    if config.ema.enabled and ("ema", "warmup") not in given:
        update["ema"] = {"warmup": True}  # the CamVid study: the warmup helped a carried-over mild in every seed
    if ("optimizer", "lr") not in given and config.optimizer.lr != "auto":
        factor = lr_factor(section.lr_scaling, config.train.global_batch_size, section.reference_batch_size)
        update["optimizer"] = {"lr": config.optimizer.lr * factor}
    for name, key in TIME_CONSTANTS:
        section_config = getattr(config, name)
        value = getattr(section_config, key)
        if (name, key) not in given and value is not None and getattr(section_config, "enabled", True):
            # a share of a wall-clock run is a time, which a method cannot count in steps: epochs instead
            unit = "ep" if timed and section.time_unit == "dur" and (name, key) in METHOD_CONSTANTS else section.time_unit
            update.setdefault(name, {})[key] = str(carry_over(
                value, unit, section.reference_train_size, section.reference_batch_size,
                section.reference_duration))
    return build_config(merge_dicts(config.to_dict(), update), f"recipe {section.name!r} (transfer)")
