"""One typed, validated configuration for a training run.

Every section is a pydantic model with ``extra="forbid"`` so typos are refused; ``load_config``
merges a recipe preset, an optional YAML file and ``--set section.key=value`` overrides, and turns
every validation problem into a one-line :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from segrecipes.duration import Duration
from segrecipes.errors import ConfigError
from segrecipes.transfer import LRScaling, TimeUnit, carry_over, lr_factor

__all__ = ["ConfigError", "Duration", "RunConfig", "build_config", "load_config"]

RECIPE_DIR = Path(__file__).parent / "recipes"
_NO_INTERVAL = (None, "", "none", 0, "0")


def _optional_duration(value: Any) -> Duration | None:
    return None if value in _NO_INTERVAL else Duration.parse(value)


def _optional_str(value: Duration | None) -> str | None:
    return None if value is None else str(value)


# Durations are written as text ('128ep') in YAML, checkpoints and dumps, and parsed on the way in.
DurationField = Annotated[Duration, PlainValidator(Duration.parse), PlainSerializer(str)]
IntervalField = Annotated[Duration | None, PlainValidator(_optional_duration), PlainSerializer(_optional_str)]
# Method constants that were plain batch counts: a bare number still means batches.
BatchesField = Annotated[Duration, PlainValidator(Duration.parse_batches), PlainSerializer(str)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Where the data comes from and the reference augmentation pipeline (SPEC §2)."""

    spec: str = "synthetic"
    crop_size: int = Field(512, gt=0)
    scale_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = Field(0.75, gt=0, le=1)
    crop_retries: int = Field(10, ge=1)
    flip_prob: float = Field(0.5, ge=0, le=1)
    photometric: bool = True
    eval_size: int = Field(512, gt=0)
    num_workers: int = Field(2, ge=0)
    pin_memory: bool = True
    persistent_workers: bool = True
    check: bool = True  # header-level checks of every file before training (segrecipes data check does more)
    skip_bad: bool = False  # train without the files the checks flag, instead of refusing them
    # folder:PATH datasets only
    num_classes: int | None = Field(None, gt=0)
    ignore_value: int = Field(255, ge=0, le=65535)
    reduce_zero_label: bool = False
    label_map: dict[int, int | Literal["ignore"]] | None = None  # stored mask value -> class or ignore, e.g. {255: 1}
    palette: str | None = None  # colour masks: a palette file (R G B name per line, or CSV) or an indexed PNG
    # any dataset
    in_channels: int = Field(3, ge=1)  # image channels (.npy/.tif images may have more than 3)
    mean: list[float] | Literal["auto"] | None = None  # per channel, in stored units; None: ImageNet's, for 8-bit RGB
    std: list[float] | Literal["auto"] | None = None  # "auto": from `segrecipes data stats` of the training split
    transform: str | None = None  # package.module:callable, (uint8 image, mask) -> (image, mask), after the pipeline
    # synthetic datasets only
    synthetic_train_size: int = Field(256, gt=0)
    synthetic_val_size: int = Field(64, gt=0)
    synthetic_image_size: int = Field(96, ge=16)
    synthetic_num_classes: int = Field(6, ge=2, le=255)  # 150 mimics ADE20k's class count in benchmarks
    synthetic_seed: int = 0

    @field_validator("scale_range")
    @classmethod
    def _check_scales(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {list(value)}")
        return value

    @field_validator("transform")
    @classmethod
    def _check_transform(cls, value: str | None) -> str | None:
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ValueError(f"expected package.module:callable, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_statistics(self) -> DataConfig:
        """Keys checked together are checked where the dataset is built (data.spec.channel_stats), as
        ``--set`` overrides are validated one at a time."""
        if isinstance(self.std, list) and min(self.std) <= 0:
            raise ValueError(f"data.std must be positive, got {self.std}")
        return self


class ModelConfig(Section):
    """The network: the reference DeepLabv3+ or any segmentation_models_pytorch architecture."""

    name: str = "deeplabv3plus"
    backbone: str = "resnet101"
    output_stride: Literal[8, 16] = 8
    weights: str | None = None
    dropout: float = Field(0.1, ge=0, lt=1)
    head_channels: int = Field(512, gt=0)  # the reference head is 512 wide; smaller for quick CPU demos
    freeze_backbone: IntervalField = None  # train only the head for this long (any unit); frozen BatchNorm in eval mode

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value != "deeplabv3plus" and not value.startswith("smp:"):
            raise ValueError(f"unknown model {value!r}: use 'deeplabv3plus' or 'smp:<Arch>' (e.g. smp:Unet)")
        return value


class OptimizerConfig(Section):
    """SGDW is the reference: decoupled weight decay scaled by lr_t / lr_0 (SPEC §2)."""

    name: Literal["sgdw", "sgd", "adamw"] = "sgdw"
    lr: float = Field(0.08, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-5, ge=0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only
    backbone_lr_mult: float = Field(1.0, ge=0)  # the backbone's learning rate relative to the head's
    norm_weight_decay: float | None = Field(None, ge=0)  # for norm layers and biases (None: weight_decay)


class ScheduleConfig(Section):
    name: Literal["cosine", "poly", "constant"] = "cosine"
    warmup: IntervalField = None
    power: float = Field(0.9, gt=0)
    final_lr_ratio: float = Field(0.0, ge=0, le=1)


class TrainConfig(Section):
    duration: DurationField = Duration(128, "ep")
    dur_base: IntervalField = None  # what `dur` values are fractions of (None: duration); --resume sets it on extension
    global_batch_size: int = Field(128, gt=0)
    device_microbatch_size: int | Literal["auto"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    sync_bn: bool = False
    seed: int = 42
    eval_interval: IntervalField = Duration(1, "ep")
    log_interval: int = Field(10, gt=0)
    checkpoint_interval: IntervalField = Duration(1, "ep")
    keep_last: int = Field(2, ge=1)
    eval_at_start: bool = False
    max_bad_steps: int = Field(20, ge=1)  # consecutive non-finite steps before the run stops
    loggers: list[Literal["tensorboard", "wandb", "mlflow"]] = ["tensorboard"]  # besides metrics.jsonl
    log_images: int = Field(8, ge=0)  # validation images rendered at each evaluation (samples/step-N/, TensorBoard)
    best_metric: str = "miou"  # what decides best.pt: miou, mdice, macc, pixel_acc, ... or iou/<class>
    early_stop_patience: int | None = Field(None, ge=1)  # evaluations without a new best before the run ends
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    dist_timeout: float = Field(1800, gt=0)  # seconds a collective waits for the other ranks before failing

    @field_validator("duration", "dur_base")
    @classmethod
    def _check_duration(cls, value: Duration | None) -> Duration | None:
        if value is not None and value.unit == "dur":
            raise ValueError(f"{value} is a fraction of the run itself: give the run in ba, ep, sp or time")
        return value

    @field_validator("device_microbatch_size")
    @classmethod
    def _check_microbatch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value <= 0:
            raise ValueError("device_microbatch_size must be positive or 'auto'")
        return value


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


class EvalConfig(Section):
    protocol: Literal["reference", "standard"] = "reference"
    tta: Literal["none", "flip", "ms-flip"] = "none"
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    mode: Literal["whole", "slide"] = "whole"
    crop_size: int = Field(512, gt=0)
    stride: int = Field(341, gt=0)
    batch_size: int = Field(8, gt=0)


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


def _recipe_section(value: Any) -> Any:
    """A recipe given by name (``recipe: mild``, as the first release wrote it) is its section."""
    if value is None or isinstance(value, str):
        return {"name": value}
    return value


class RunConfig(Section):
    """The whole run; every section can be overridden with ``--set section.key=value``."""

    recipe: RecipeConfig = RecipeConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()
    ema: EMAConfig = EMAConfig()
    channels_last: ChannelsLastConfig = ChannelsLastConfig()
    mixup: MixUpConfig = MixUpConfig()
    sam: SAMConfig = SAMConfig()
    eval: EvalConfig = EvalConfig()

    _recipe_by_name = field_validator("recipe", mode="before")(_recipe_section)

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


def _format_error(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    location = tuple(part for part in first["loc"] if not isinstance(part, int) or len(first["loc"]) == 1)
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
    preset: dict[str, Any] = recipe_dict(recipe) if recipe else {}
    source = f"recipe {recipe!r}" if recipe else "config"
    user: dict[str, Any] = {}
    if config_file is not None:
        user = _read_yaml(Path(config_file))
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
        user = merge_dicts(user, parse_override(override))
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
    if ("optimizer", "lr") not in given:
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
