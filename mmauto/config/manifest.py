"""The dataset manifest: a typed schema, validated once, at the edge.

Validation runs in two steps: the shared fields first, then each input's options against the
schema its modality registers. Every problem is a `ManifestError` naming the file, the key
path and what is valid. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import Field, field_validator, model_validator

from mmauto.config.choices import Tuner
from mmauto.config.schema import Strict, validate_model
from mmauto.errors import ManifestError, one_of

TASKS = ("classification", "multilabel", "regression", "retrieval")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".json")
INPUT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# The reconstruction objective: `plain` decodes from the fused vector (an autoencoder),
# `variational` from a Gaussian latent the fused vector parameterises (a multimodal VAE).
RECONSTRUCTIONS = ("plain", "variational")


# === Shared schema ===


class SplitSpec(Strict):
    validation: float = Field(0.15, ge=0.0, lt=0.9)
    test: float = Field(0.15, ge=0.0, lt=0.9)
    seed: int = 42
    stratify: bool = True

    @model_validator(mode="after")
    def _sum(self):
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% of the rows for training")
        return self


class DataSpec(Strict):
    train: str
    validation: Optional[str] = None
    test: Optional[str] = None
    split: SplitSpec = SplitSpec()
    root: Optional[str] = None
    on_error: Literal["fail", "skip"] = "fail"


TaskName = Literal["classification", "multilabel", "regression"]
# `retrieval`: the rows are matching pairs of the inputs (no target column); see heads/retrieval.py.
ManifestTask = Literal["classification", "multilabel", "regression", "retrieval"]


def _weight_setting(v):
    """A target's loss weight: a number >= 0 pins it, a list or {min, max} is searched."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if isinstance(v, list):
        v = [float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
    v = _range_or_choice(v, float)
    values = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [v]
    if any(x is not None and x < 0 for x in values):
        raise ValueError(f"a loss weight is >= 0, got {v!r}")
    return v


class TargetSpec(Strict):
    """One target column. `task` unset: the manifest's `task`. An `auxiliary` target is a
    training signal only: its head trains with the others but is not served."""

    column: str
    task: Optional[TaskName] = None
    separator: str = "|"
    auxiliary: bool = False
    weight: Any = None

    @field_validator("weight")
    @classmethod
    def _weight(cls, v):
        return _weight_setting(v)

    @property
    def name(self) -> str:
        """The target's name in served outputs and metric names (`<name>_probabilities`)."""
        return re.sub(r"[^A-Za-z0-9_]", "_", self.column)


class EncoderSpec(Strict):
    """`type` unset: searched among the modality's encoders; a list: searched among those."""

    type: Union[str, list[str], None] = None
    preset: Optional[str] = None
    trainable: Union[bool, int, None] = None
    width: Optional[int] = Field(None, ge=2, le=4096)
    depth: Optional[int] = Field(None, ge=1, le=24)

    @field_validator("type")
    @classmethod
    def _nonempty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("give at least one encoder type, or leave the key out to search all")
        return v


def _range_or_choice(v, kind):
    """A space entry: one value (pinned), a list (choices) or {min, max} (a range)."""
    if v is None or isinstance(v, kind) and not isinstance(v, bool) or (kind is bool and isinstance(v, bool)):
        return v
    if isinstance(v, list) and v and all(isinstance(x, kind) and (kind is bool or not isinstance(x, bool)) for x in v):
        return v
    if isinstance(v, dict) and set(v) == {"min", "max"} and kind in (int, float):
        lo, hi = v["min"], v["max"]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)) or lo > hi:
            raise ValueError(f"expected {{min, max}} with min <= max, got {v}")
        return {"min": lo, "max": hi}
    what = {int: "a whole number", float: "a number", str: "a name", bool: "true or false"}[kind]
    extra = ", or {min: .., max: ..}" if kind in (int, float) else ""
    raise ValueError(f"expected {what} (pinned), a list of them (searched){extra}, got {v!r}")


class SpaceSpec(Strict):
    """Narrows or widens the search space. One value pins, a list or {min, max} is searched."""

    fusion: Any = None
    depth: Any = None
    heads: Any = None
    width: Any = None
    dropout: Any = None
    learning_rate: Any = None
    batch_size: Any = None
    modality_dropout: Any = None
    hybrid: Any = None
    fallback: Any = None  # heads per input answer rows with an input missing (model/hypermodel.py)
    input_heads: Any = None  # loss weight of each input's own head (heads/input_heads.py); 0: none
    unimodal_encoders: Any = None  # encoders learn from their input heads only (model/hypermodel.py)
    contrastive_weight: Any = None
    match_weight: Any = None  # binary target: contrastive loss on the positive rows (heads/matching.py)
    augment: Any = None  # train-time augmentation (modalities' `augment`: image, audio, video)
    reconstruction_weight: Any = None
    reconstruction: Any = None
    kl_weight: Any = None
    embedding_width: Any = None  # task retrieval: the shared embedding's width

    @model_validator(mode="before")
    @classmethod
    def _kinds(cls, data):
        if not isinstance(data, dict):
            return data
        kinds = {"fusion": str, "depth": int, "heads": int, "width": int, "dropout": float,
                 "learning_rate": float, "batch_size": int, "modality_dropout": float, "hybrid": bool, "fallback": bool, "input_heads": float,
                 "unimodal_encoders": bool,
                 "contrastive_weight": float, "match_weight": float, "augment": bool, "reconstruction_weight": float, "reconstruction": str,
                 "kl_weight": float, "embedding_width": int}
        out = dict(data)
        for key, kind in kinds.items():
            if key in out:
                value = out[key]
                if kind is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                if kind is float and isinstance(value, list):
                    value = [float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in value]
                try:
                    out[key] = _range_or_choice(value, kind)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        return out

    @field_validator("input_heads", "match_weight")
    @classmethod
    def _loss_weight(cls, v):
        values = list(v.values()) if isinstance(v, dict) else v if isinstance(v, list) else [v]
        if any(x is not None and x < 0 for x in values):
            raise ValueError(f"a loss weight is 0 (off) or more, got {v!r}")
        return v

    @field_validator("reconstruction")
    @classmethod
    def _reconstruction(cls, v):
        names = v if isinstance(v, list) else [v] if v is not None else []
        for name in names:
            if name not in RECONSTRUCTIONS:
                raise ValueError(one_of(name, RECONSTRUCTIONS, "reconstruction"))
        return v


class SearchSpec(Strict):
    tuner: Literal[tuple(t.value for t in Tuner)] = "bayesian"  # type: ignore[valid-type]
    max_trials: int = Field(10, ge=1, le=100000)
    time_budget: Union[str, int, float, None] = None
    objective: Optional[str] = None
    max_failures: int = Field(5, ge=1, le=1000)
    # The last trials that fit the budget (or max_trials) re-train the best configuration with
    # new seeds, as ensemble members (search/oracles.py RepeatBest); 0: the oracle's choices to
    # the end. Not with `train.ensemble: false`, retrieval or Hyperband.
    replicas: int = Field(2, ge=0, le=100)
    # A replica starts from its original's best weights and trains WARM_EPOCHS annealed epochs
    # (snapshot ensembling; search/tuner.py), instead of fresh weights for the epochs the original
    # needed: so several members fit where one fresh replica would. Once started, warm replicas
    # fill the time left. "auto": when the original needed at least twice WARM_EPOCHS epochs
    # and replicas anneal (train.reduce_lr true or "cosine").
    warm_replicas: Union[bool, Literal["auto"]] = "auto"
    # Before the search, a logistic regression (ridge for a regression target) over the text
    # inputs' TF-IDF joins the ensemble's candidates (mmauto/run/linear.py), one per served
    # classification or regression target; not with `train.ensemble: false`.
    linear: bool = True
    space: SpaceSpec = SpaceSpec()

    @field_validator("warm_replicas", mode="before")
    @classmethod
    def _warm(cls, v):
        if v is True or v is False or v == "auto":
            return v
        raise ValueError(f"expected true, false or 'auto', got {v!r}")

    @field_validator("time_budget")
    @classmethod
    def _budget(cls, v):
        if v is None:
            return v
        parse_duration(v)
        return v

    def budget_seconds(self) -> Optional[float]:
        return None if self.time_budget is None else parse_duration(self.time_budget)


CALIBRATIONS = ("temperature", "vector", "matrix", "beta")
# The moving average's horizon in steps (momentum 1 - 1 / steps) at most: one epoch when shorter,
# so a small data set's average does not lag epochs behind. On degraded AV-digits (two seeds of
# the CNN entry alone, bench/RESULTS.md) 100 steps cut the test log loss from 0.126 to 0.097;
# in a 600 s search the averaged replicas were alike and their ensemble gained little.
EMA_STEPS = 100


class TrainSpec(Strict):
    epochs: int = Field(20, ge=1, le=100000)
    batch_size: Optional[int] = Field(None, ge=1, le=65536)
    learning_rate: Optional[float] = Field(None, gt=0, le=10)
    early_stopping: Union[bool, int] = 3
    # The learning rate times this factor after each epoch in which the objective did not
    # improve (Keras' ReduceLROnPlateau, patience 1; after the warm-up, search/tuner.py
    # warm_up_epochs, as early stopping); true: 0.5, and a replica of the best trial
    # anneals along half a cosine to 0 over the epochs its configuration needed (no early
    # stopping: the schedule sets its length), as does a portfolio entry known to need its
    # epochs (search/portfolio.py Entry.anneal) over train.epochs; "cosine": every trial anneals
    # so over its planned epochs; false: a constant rate. An annealing trial that would not end
    # before the deadline anneals over the epochs that fit.
    reduce_lr: Union[bool, float, Literal["cosine"]] = True
    # Validate, keep and export an exponential moving average of the weights (Polyak averaging;
    # Keras' optimizer `use_ema` and `SwapEMAWeights`): true: over the last EMA_STEPS steps or one
    # epoch, whichever is shorter; a momentum in (0, 1) pins it; false: the raw weights. Off by
    # default: it made single trials better but the replicas' ensemble worse (bench/RESULTS.md).
    ema: Union[bool, float] = False
    modality_dropout: Optional[float] = Field(None, ge=0, le=0.9)
    contrastive_weight: Optional[float] = Field(None, ge=0, le=10)
    # A binary target's positive rows as matched pairs of inputs (heads/matching.py); 0: off.
    match_weight: Optional[float] = Field(None, ge=0, le=10)
    # Train-time augmentation of image, audio and video inputs (shifts, erased patches, SpecAugment
    # masks; never served). Unset: searched, off first.
    augment: Optional[bool] = None
    reconstruction_weight: Optional[float] = Field(None, ge=0, le=10)
    reconstruction: Optional[Literal[RECONSTRUCTIONS]] = None  # type: ignore[valid-type]
    kl_weight: Optional[float] = Field(None, ge=0, le=10)
    class_weight: Optional[Literal["balanced"]] = None
    seed: int = 42
    mixed_precision: bool = False
    feature_cache: bool = True  # frozen encoders' outputs computed once, reused by every trial
    # The label's threshold on a probability (binary: of the second class; multilabel: of each
    # label). Unset: chosen on validation (binary for `threshold_metric`, multilabel per label
    # for F1); a value pins it.
    threshold: Optional[float] = Field(None, gt=0, lt=1)
    threshold_metric: Literal["accuracy", "f1"] = "accuracy"
    # Calibration fitted on validation after the search (stage `calibrate`): classifiers'
    # probabilities scaled (true: temperature scaling, vector scaling, matrix scaling where the
    # validation rows suffice, or for two classes beta calibration, chosen by its likelihood ratio
    # on the validation rows and served shrunk by it (heads/scaling.py); "temperature", "vector",
    # "matrix" (two classes: beta) or "beta" (two classes) pins one, served as fitted; multilabel:
    # one shared temperature), regression's conformal interval; false: none.
    calibrate: Union[bool, Literal[CALIBRATIONS]] = True  # type: ignore[valid-type]
    interval_coverage: float = Field(0.9, gt=0, lt=1)
    # Greedy ensemble selection over the trials: true (up to ENSEMBLE_STEPS picks), a number of
    # picks, or false for the best single trial.
    ensemble: Union[bool, Annotated[int, Field(ge=1, le=1000)]] = True
    # Several targets: the loss is the weighted sum of the targets' losses. `auto` learns the
    # weights (homoscedastic uncertainty, Kendall et al., 2018); a mapping target -> weight pins
    # (a number) or searches (a list or {min, max}) a target's weight. Unset, with no target's
    # `weight` given either: auto. Some given: the first target's is 1 and any other left
    # unset is searched among heads/multi.py SECONDARY_WEIGHTS.
    loss_weights: Union[Literal["auto"], dict[str, Any], None] = None

    @field_validator("calibrate", mode="before")
    @classmethod
    def _calibrate(cls, v):
        if v is True or v is False or v in CALIBRATIONS:
            return v
        raise ValueError(f"expected true, false, 'temperature', 'vector', 'matrix' or 'beta', got {v!r}")

    @field_validator("reduce_lr", "ema", mode="before")
    @classmethod
    def _flag_or_fraction(cls, v, info):
        if v is True or v is False or (isinstance(v, (int, float)) and 0 < v < 1) or (info.field_name == "reduce_lr" and v == "cosine"):
            return v
        what = {"reduce_lr": "'cosine' or a factor between 0 and 1 (0.5 halves the rate)",
                "ema": "a momentum between 0 and 1 (0.99 averages about the last 100 steps)"}[info.field_name]
        raise ValueError(f"expected true, false or {what}, got {v!r}")

    def ema_momentum(self, steps_per_epoch: Optional[int] = None) -> Optional[float]:
        """The weights' moving-average momentum, or None: no average (`ema: false`, or `true`
        with under two steps per epoch)."""
        if self.ema is False:
            return None
        if self.ema is not True:
            return float(self.ema)
        horizon = EMA_STEPS if steps_per_epoch is None else min(EMA_STEPS, steps_per_epoch)
        return 1.0 - 1.0 / horizon if horizon >= 2 else None

    def cosine(self) -> Optional[str]:
        """The trials whose rate follows a cosine: "all", "chosen" (replicas and the portfolio
        entries that anneal) or None."""
        return "all" if self.reduce_lr == "cosine" else "chosen" if self.reduce_lr is True else None

    def lr_factor(self) -> Optional[float]:
        """The factor the learning rate is multiplied by on a plateau, or None: constant."""
        if self.reduce_lr is False or self.reduce_lr == "cosine":
            return None
        return 0.5 if self.reduce_lr is True else float(self.reduce_lr)

    @field_validator("loss_weights")
    @classmethod
    def _loss_weights(cls, v):
        return {k: _weight_setting(w) for k, w in v.items()} if isinstance(v, dict) else v


ENSEMBLE_STEPS = 25


class ExportSpec(Strict):
    dir: str = "model"
    formats: list[Literal["saved_model"]] = ["saved_model"]


ZERO_SHOT_TEMPLATE = "a photo of a {}."


class ZeroShotSpec(Strict):
    """`task: zero_shot`: the class names and the prompt each is written into ("{}" is the name)."""

    classes: list[str]
    template: str = ZERO_SHOT_TEMPLATE

    @field_validator("classes")
    @classmethod
    def _classes(cls, v):
        names = [c.strip() for c in v]
        if len(names) < 2:
            raise ValueError(f"name at least two classes, got {len(names)}")
        if any(not c for c in names):
            raise ValueError("a class name is empty")
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            raise ValueError(f"class '{twice[0]}' is named twice")
        return names

    @field_validator("template")
    @classmethod
    def _template(cls, v):
        if v.count("{}") != 1 or v.replace("{}", "").count("{") or v.replace("{}", "").count("}"):
            raise ValueError(f"the template holds the class name as one '{{}}', e.g. {ZERO_SHOT_TEMPLATE!r}; got {v!r}")
        return v

    def prompts(self) -> list[str]:
        return [self.template.replace("{}", c) for c in self.classes]


class ManifestSpec(Strict):
    version: Literal[1] = 1
    name: Optional[str] = None
    extends: Optional[str] = None
    task: Union[ManifestTask, Literal["zero_shot"]]
    data: DataSpec
    target: Union[str, TargetSpec, list[Union[str, TargetSpec]], None]  # None: zero_shot without labels
    zero_shot: Optional[ZeroShotSpec] = None
    inputs: dict[str, dict]
    search: SearchSpec = SearchSpec()
    train: TrainSpec = TrainSpec()
    export: ExportSpec = ExportSpec()

    @field_validator("inputs")
    @classmethod
    def _some(cls, v):
        if not v:
            raise ValueError("name at least one input")
        return v

    @model_validator(mode="before")
    @classmethod
    def _zero_shot_labels(cls, data):
        """A zero-shot manifest may leave out `target` (its classes are named in `zero_shot`)."""
        if isinstance(data, dict) and data.get("task") == "zero_shot" and "target" not in data:
            return {**data, "target": None}
        return data


class RetrievalManifestSpec(ManifestSpec):
    """`task: retrieval`: no target (a `target` written is refused in `resolve`, naming it)."""

    target: Union[str, TargetSpec, list[Union[str, TargetSpec]], None] = None


def _spec_model(data) -> type[ManifestSpec]:
    return RetrievalManifestSpec if isinstance(data, dict) and data.get("task") == "retrieval" else ManifestSpec


# === Resolved manifest ===


@dataclasses.dataclass
class InputSpec:
    """One named input after both validation steps."""

    name: str
    modality: str
    options: Any  # the modality's Options model
    encoder: EncoderSpec

    def to_dict(self) -> dict:
        d = {"modality": self.modality, **self.options.model_dump()}
        enc = self.encoder.model_dump(exclude_none=True)
        if enc:
            d["encoder"] = enc
        return d


@dataclasses.dataclass
class Manifest:
    """A validated manifest; paths are absolute."""

    path: Path
    name: str
    task: str
    data: DataSpec
    targets: list[TargetSpec]  # each with its task resolved; see `target` (empty for retrieval)
    inputs: dict[str, InputSpec]
    search: SearchSpec
    train: TrainSpec
    export: ExportSpec
    raw: dict  # the merged YAML as written (after `extends:`), for the model card and resume checks
    zero_shot: Optional[ZeroShotSpec] = None  # task zero_shot: its classes and prompt template

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def target(self) -> Optional[TargetSpec]:
        """The primary target: the first one that is not auxiliary. Its metric is the search
        objective's, and a model with one served target serves it under today's output names.
        None for `task: retrieval` (no target; code it reaches checks `retrieval`) and for a
        zero-shot manifest without labels."""
        return next((t for t in self.targets if not t.auxiliary), None)

    @property
    def retrieval(self) -> bool:
        return self.task == "retrieval"

    @property
    def served_targets(self) -> list[TargetSpec]:
        return [t for t in self.targets if not t.auxiliary]

    def table_path(self, split: str) -> Optional[Path]:
        value = getattr(self.data, split)
        return None if value is None else (self.path.parent / value).resolve()

    def media_root(self, table: Path) -> Path:
        if self.data.root:
            return (self.path.parent / self.data.root).resolve()
        return table if table.is_dir() else table.parent

    def to_dict(self) -> dict:
        return {
            "version": 1,
            "name": self.name,
            "task": self.task,
            "data": self.data.model_dump(),
            **({} if not self.targets else {"target": self.targets[0].model_dump() if len(self.targets) == 1 else [t.model_dump() for t in self.targets]}),
            "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
            "search": self.search.model_dump(),
            "train": self.train.model_dump(),
            "export": self.export.model_dump(),
            **({"zero_shot": self.zero_shot.model_dump()} if self.zero_shot else {}),
        }


# === Loading ===


def parse_duration(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"expected a positive duration, got {value}")
        return float(value)
    m = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", str(value))
    if not m or not any(m.groups()):
        raise ValueError(f"expected a duration like 90s, 30m or 2h, got {value!r}")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    total = h * 3600 + mi * 60 + s
    if total <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return total


# A manifest is a few dozen values; aliases that expand it beyond this are refused (an alias
# "bomb" of a few hundred bytes expands to gigabytes in an error message or a deep copy).
MAX_YAML_VALUES = 10_000


class _YamlProblem(Exception):
    def __init__(self, line: int, what: str):
        super().__init__(what)
        self.line, self.what = line, what


class _ManifestLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` then a key of base: an override, not a repeat
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _YamlProblem(line, f"key '{key}' appears twice in one mapping (first on line {seen[key]}); keep one")
                    seen[key] = line
                except TypeError:  # an unhashable key: SafeLoader reports it below
                    continue
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, memo: dict, active: set) -> int:
    """How many values the node stands for once every alias is written out."""
    ident = id(node)
    if ident in memo:
        return memo[ident]
    if ident in active:
        raise _YamlProblem(node.start_mark.line + 1, "an alias refers to the value that contains it")
    active.add(ident)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo, active) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value)
    active.discard(ident)
    if size > MAX_YAML_VALUES:
        raise _YamlProblem(node.start_mark.line + 1, f"anchors and aliases expand the file to more than {MAX_YAML_VALUES} "
                           "values; write the values out")
    memo[ident] = size
    return size


def parse_yaml(text: str):
    """yaml.safe_load, with keys written twice and alias expansions beyond MAX_YAML_VALUES refused."""
    loader = _ManifestLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: Path, where: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(where, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(where, "", f"cannot read: {exc}") from None
    try:
        return parse_yaml(text)
    except _YamlProblem as exc:
        raise ManifestError(where, "", f"line {exc.line}: {exc.what}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ManifestError(where, "", f"YAML syntax error at {line}{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(where, "", f"YAML syntax error: {exc}") from None
    except RecursionError:
        raise ManifestError(where, "", "YAML nested too deeply") from None


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _apply_extends(data: dict, where: str) -> dict:
    name = data.get("extends")
    if name is None:
        return data
    from mmauto import recipes

    if not isinstance(name, str) or name not in recipes.names():
        raise ManifestError(where, "extends", one_of(name, recipes.names(), "recipe"))
    base = recipes.load(name)
    base.pop("extends", None)
    merged = deep_merge(base, {k: v for k, v in data.items() if k != "extends"})
    merged["extends"] = name
    return merged


def load_manifest(path, overrides: Optional[dict] = None) -> Manifest:
    """Read, merge (`extends:`), validate and resolve a manifest file."""
    path = Path(path).resolve() if path else Path("manifest.yaml").resolve()
    where = str(path)
    data = read_yaml(path, where)
    if not isinstance(data, dict):
        raise ManifestError(where, "", "expected a mapping of keys (task, data, target, inputs, ...) at the top")
    data = _apply_extends(data, where)
    if overrides:
        data = deep_merge(data, overrides)
    spec = validate_model(_spec_model(data), data, where)
    return resolve(spec, data, path)


def manifest_from_dict(raw: dict, path) -> Manifest:
    """A manifest stored in a run folder; its data files need not exist any more."""
    path = Path(path)
    return resolve(validate_model(_spec_model(raw), raw, str(path)), raw, path, check_files=False)


def resolve(spec: ManifestSpec, raw: dict, path: Path, check_files: bool = True) -> Manifest:
    where = str(path)
    from mmauto.registry import MODALITIES

    targets = _retrieval(spec, raw, where) if spec.task == "retrieval" else _targets(spec, raw, where)

    inputs: dict[str, InputSpec] = {}
    serving_keys: dict[str, str] = {}
    for name, body in spec.inputs.items():
        key = f"inputs.{name}"
        if not isinstance(name, str) or not INPUT_NAME.match(name) or "__" in name:
            raise ManifestError(where, key, "an input name starts with a letter and holds only letters, digits and single underscores")
        if not isinstance(body, dict):
            raise ManifestError(where, key, "expected a mapping with at least `modality` and its columns")
        body = dict(body)
        modality = body.pop("modality", None)
        if modality is None:
            raise ManifestError(where, f"{key}.modality", f"required key is missing ({', '.join(MODALITIES.names())})")
        if not isinstance(modality, str) or modality not in MODALITIES:
            raise ManifestError(where, f"{key}.modality", one_of(modality, MODALITIES.names(), "modality"))
        encoder_raw = body.pop("encoder", None) or {}
        mod = MODALITIES.get(modality)()
        options = validate_model(mod.Options, body, where, (("inputs", name)))
        encoder = validate_model(EncoderSpec, encoder_raw, where, ("inputs", name, "encoder"))
        _check_encoder(where, f"{key}.encoder", modality, encoder)
        inputs[name] = InputSpec(name, modality, options, encoder)
        for skey in mod.serving_spec(name, options):
            if skey in serving_keys:
                raise ManifestError(where, key, f"serving input '{skey}' is also used by inputs.{serving_keys[skey]}; rename one")
            serving_keys[skey] = name
        for col in mod.columns(options):
            if col in {t.column for t in targets}:
                what = "the target" if len(targets) == 1 else "a target"
                raise ManifestError(where, key, f"column '{col}' is {what}; an input cannot read it")

    space = spec.search.space
    if space.fusion is not None:
        from mmauto.registry import FUSIONS

        for f in space.fusion if isinstance(space.fusion, list) else [space.fusion]:
            if f not in FUSIONS:
                raise ManifestError(where, "search.space.fusion", one_of(f, FUSIONS.names(), "fusion"))
    if spec.search.objective is not None and not re.fullmatch(r"(val_)?[a-z0-9_]+", spec.search.objective):
        raise ManifestError(where, "search.objective", f"expected a metric name such as val_loss, got {spec.search.objective!r}")

    for split in ("train", "validation", "test"):
        value = getattr(spec.data, split)
        if value is None or not check_files:
            continue
        p = (path.parent / value).resolve()
        if not p.exists():
            raise ManifestError(where, f"data.{split}", f"not found: {p}")
        if p.is_dir():
            continue
        if p.suffix.lower() not in TABLE_SUFFIXES:
            raise ManifestError(where, f"data.{split}", f"unsupported table '{p.name}' ({', '.join(TABLE_SUFFIXES)}, or a folder of class sub-folders of images)")
    if check_files and spec.data.root is not None and not (path.parent / spec.data.root).is_dir():
        raise ManifestError(where, "data.root", f"not a folder: {(path.parent / spec.data.root).resolve()}")

    if spec.task == "zero_shot" or spec.zero_shot is not None:
        _check_zero_shot(spec, inputs, targets, raw, where)
    name = spec.name or path.stem
    return Manifest(path, name, spec.task, spec.data, targets, inputs, spec.search, spec.train, spec.export, raw, spec.zero_shot)


def _retrieval(spec: ManifestSpec, raw: dict, where: str) -> list[TargetSpec]:
    """`task: retrieval`: no target (the rows are matching pairs), two or more inputs."""
    if "target" in raw:
        raise ManifestError(where, "target", "task retrieval has no target: each row is a matching pair (or set) of its "
                                             "inputs; remove `target`, or pick classification, multilabel or regression")
    if not isinstance(spec.inputs, dict) or len(spec.inputs) < 2:
        raise ManifestError(where, "inputs", f"task retrieval matches two or more inputs (one row: one matching pair); "
                                             f"got {len(spec.inputs)} ({', '.join(map(str, spec.inputs))})")
    if spec.train.loss_weights is not None:
        raise ManifestError(where, "train.loss_weights", "task retrieval has no targets to weigh; remove it")
    return []


def _targets(spec: ManifestSpec, raw: dict, where: str) -> list[TargetSpec]:
    """The targets with their tasks resolved, checked as a set."""
    if spec.target is None:
        if spec.task == "zero_shot":
            return []  # no labels: nothing is scored
        raise ManifestError(where, "target", f"required key is missing (the column to predict; every task but retrieval "
                                             f"needs one: {', '.join(TASKS)})")
    items = spec.target if isinstance(spec.target, list) else [spec.target]
    raw_items = raw.get("target") if isinstance(raw.get("target"), list) else [raw.get("target")]
    if not items:
        raise ManifestError(where, "target", "name at least one target column")
    several = isinstance(spec.target, list)
    targets = []
    for i, (item, body) in enumerate(zip(items, raw_items)):
        key = f"target[{i}]" if several else "target"
        t = item if isinstance(item, TargetSpec) else TargetSpec(column=item)
        # zero_shot's labels are read as a classifier's: one class name per row.
        t = t.model_copy(update={"task": t.task or ("classification" if spec.task == "zero_shot" else spec.task)})
        if t.task != "multilabel" and isinstance(body, dict) and "separator" in body:
            raise ManifestError(where, f"{key}.separator", "only a multilabel target splits its values; remove it")
        if not several and (t.auxiliary or t.weight is not None):
            raise ManifestError(where, f"{key}.auxiliary" if t.auxiliary else f"{key}.weight",
                                "only one of several targets can be auxiliary or weighted; list the targets")
        targets.append(t)
    seen: dict[str, int] = {}
    for i, t in enumerate(targets):
        if t.column in seen or t.name in {u.name for u in targets[:i]}:
            raise ManifestError(where, f"target[{i}]", f"column '{t.column}' is named twice; each target is one column")
        seen[t.column] = i
    if all(t.auxiliary for t in targets):
        raise ManifestError(where, "target", "every target is auxiliary; at least one must be served")
    weights = spec.train.loss_weights
    if isinstance(weights, dict):
        for col in weights:
            if col not in seen:
                raise ManifestError(where, f"train.loss_weights.{col}", one_of(col, list(seen), "target column"))
            if targets[seen[col]].weight is not None:
                raise ManifestError(where, f"train.loss_weights.{col}", f"target '{col}' already sets `weight`; keep one")
    if weights is not None and len(targets) == 1:
        raise ManifestError(where, "train.loss_weights", "a single target has no loss weights; list several targets")
    return targets


def _check_zero_shot(spec: ManifestSpec, inputs: dict, targets: list, raw: dict, where: str) -> None:
    """task zero_shot: the `zero_shot` key, one image or text input with a preset, at most one
    classification target whose labels are class names."""
    if spec.task != "zero_shot":
        raise ManifestError(where, "zero_shot", f"only `task: zero_shot` reads this key (task is {spec.task})")
    if spec.zero_shot is None:
        raise ManifestError(where, "zero_shot", "required with task zero_shot: {classes: [..], template: \"a photo of a {}.\"}")
    if len(inputs) != 1:
        raise ManifestError(where, "inputs", f"task zero_shot takes exactly one input (an image or a text, with a CLIP or SigLIP preset), got {len(inputs)}: {', '.join(inputs)}")
    (name, inp), = inputs.items()
    if inp.modality not in ("image", "text"):
        raise ManifestError(where, f"inputs.{name}.modality", f"task zero_shot classifies an image or a text input (got {inp.modality})")
    if not inp.encoder.preset:
        raise ManifestError(where, f"inputs.{name}.encoder.preset", "task zero_shot needs a CLIP or SigLIP preset (a keras-hub preset name or a local preset folder)")
    if isinstance(raw.get("target"), list) or len(targets) > 1:
        raise ManifestError(where, "target", "task zero_shot takes one label column (class names), not a list")
    if targets and targets[0].task != "classification":
        raise ManifestError(where, "target.task", f"task zero_shot's labels are class names (classification), got {targets[0].task}")


def _check_encoder(where, key, modality, encoder: EncoderSpec):
    from mmauto.registry import ENCODERS

    valid = [n for n, cls in ENCODERS.items() if modality in cls.modalities]
    if encoder.preset and encoder.type is None:
        encoder.type = "keras_hub"  # a preset says which encoder it is
    types = encoder.type if isinstance(encoder.type, list) else ([encoder.type] if encoder.type else [])
    for t in types:
        if t not in valid:
            raise ManifestError(where, f"{key}.type", one_of(t, valid, f"{modality} encoder"))
    if "keras_hub" in types and not encoder.preset:
        raise ManifestError(where, f"{key}.preset", "a keras_hub encoder needs a preset name or a local preset folder")
    if encoder.preset and types and "keras_hub" not in types:
        raise ManifestError(where, f"{key}.preset", "only the keras_hub encoder takes a preset; add type: keras_hub")
    if isinstance(encoder.trainable, int) and not isinstance(encoder.trainable, bool) and encoder.trainable < 0:
        raise ManifestError(where, f"{key}.trainable", f"expected true, false or a number of last blocks >= 0, got {encoder.trainable}")
