"""Training configuration: typed, closed and frozen, read from YAML.

Every knob of ``lgml train`` lives here, validated at load with errors that name the bad key
and its allowed values. Seeds come only from :attr:`TrainConfig.seed`.

Example:
    >>> cfg = TrainConfig.from_yaml("task: designation\\nname: demo\\ndata: {simulate: {firms: 3000}}\\n"
    ...                             "split: {train_until: 2022, valid: [2023], test: [2024, 2025]}\\n")
    >>> cfg.calibration, cfg.lightgbm.num_threads
    ('spline', 2)
    >>> TrainConfig.from_yaml(cfg.to_yaml()) == cfg
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Task = Literal["designation", "growth", "review"]
BINARY_TASKS = ("designation", "review")
"""Tasks whose model gives a calibrated probability (log-odds raw output)."""
Calibration = Literal["spline", "isotonic", "platt", "none"]
Imbalance = Literal["none", "is_unbalance", "scale_pos_weight"]
Metric = Literal["auc", "average_precision", "binary_logloss", "l2", "l1", "huber"]
BINARY_METRICS = ("auc", "average_precision", "binary_logloss")


class ConfigError(ValueError):
    """A configuration file is unreadable or breaks the schema; the message names each bad key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SimulateSource(_Frozen):
    """The embedded default: a simulated panel (see :func:`lgml.simulate.simulate`)."""

    firms: int = Field(20_000, ge=100, description="Firms simulated.")
    seed: int = Field(0, description="Seed of the simulation (not of the model).")


class DataConfig(_Frozen):
    """Where the panel comes from: either ``simulate`` or the ``panel``/``events`` files."""

    simulate: SimulateSource | None = None
    panel: Path | None = None
    events: Path | None = None
    truth: Path | None = Field(None, description="Optional truth table (firm_id, year, p_designation, "
                                                 "expected_growth) for the oracle comparison.")
    units: Literal["yuan", "wan"] | None = Field(None, description="Money units overriding the headers' (None: each "
                                                                  "header's unit, e.g. 营业收入(万元), else yuan).")
    encoding: str | None = None
    sheet: str | int | None = Field(None, description="Sheet of .xlsx files: name or 0-based position (default the first).")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        files = self.panel is not None or self.events is not None or self.truth is not None
        if self.simulate is not None and files:
            raise ValueError("give either 'simulate' or 'panel'/'events' files, not both")
        if self.simulate is None and (self.panel is None or self.events is None):
            raise ValueError("give either 'simulate: {firms, seed}' or both 'panel' and 'events' paths")
        return self


class SplitConfig(_Frozen):
    """Split by batch (application) year: train on batches ``train_from..train_until``, stop
    early and calibrate on ``valid``, report on ``test``. A firm-year belongs to exactly one set."""

    train_until: int = Field(ge=2000, le=2036)
    train_from: int | None = Field(None, description="Earliest batch year trained on (default: all).")
    valid: list[int] = Field(min_length=1)
    test: list[int] = Field(min_length=1)

    @model_validator(mode="after")
    def _disjoint_and_ordered(self) -> SplitConfig:
        if self.train_from is not None and self.train_from > self.train_until:
            raise ValueError(f"train_from={self.train_from} comes after train_until={self.train_until}")
        for name, years in (("valid", self.valid), ("test", self.test)):
            if len(set(years)) != len(years):
                raise ValueError(f"{name} repeats a batch year: {years}")
            if min(years) <= self.train_until:
                raise ValueError(f"{name} batch years {years} must all come after train_until={self.train_until}")
        overlap = sorted(set(self.valid) & set(self.test))
        if overlap:
            raise ValueError(f"valid and test share batch years {overlap}")
        if min(self.test) <= max(self.valid):
            raise ValueError(f"test batch years {self.test} must all come after valid {self.valid}")
        return self


class LightGBMConfig(_Frozen):
    """LightGBM parameters. ``seed`` is not here: it comes from :attr:`TrainConfig.seed`."""

    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2, le=4096)
    max_depth: int = Field(-1, ge=-1)
    min_child_samples: int = Field(100, ge=1)
    min_sum_hessian_in_leaf: float = Field(1e-3, ge=0)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l1: float = Field(0.0, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    cat_smooth: float = Field(10.0, ge=0)
    max_cat_to_onehot: int = Field(4, ge=1)
    max_bin: int = Field(255, ge=2)
    num_boost_round: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    imbalance: Imbalance = Field("none", description="Class re-weighting for designation; distorts "
                                                     "probabilities, which calibration then undoes.")
    metric: Metric | None = Field(None, description="Early-stopping metric on the validation batches; "
                                                    "default auc (designation) or l2 (growth).")
    negative_rate: float = Field(1.0, gt=0, le=1, description="Designation: share of negatives outside the "
                                 "provincial pool kept for training (weighted 1/rate).")
    deterministic: bool = True
    force_row_wise: bool = True
    num_threads: int = Field(2, ge=1)

    def params(self, task: str, seed: int) -> dict[str, Any]:
        """LightGBM ``params`` for ``task`` (without monotone constraints or the class weight,
        which depend on the data)."""
        skip = {"num_boost_round", "early_stopping_rounds", "imbalance", "metric", "negative_rate"}
        out = {k: v for k, v in self.model_dump().items() if k not in skip}
        binary = task in BINARY_TASKS
        out.update(objective="binary" if binary else "regression",
                   metric=self.metric or ("auc" if binary else "l2"),
                   seed=seed, verbosity=-1)
        return out


class LevelAdjustConfig(_Frozen):
    """Refit per-level log-odds offsets (e.g. per province) on the validation batches as extra
    boosting rounds that may split only on ``by``. MIIT allots each batch's designations by
    province and the allotments drift between batches, so the most recent batch is the best
    guide to the next one's provincial levels. ``by: null`` turns it off."""

    by: Literal["province", "sector"] | None = None
    rounds: int = Field(10, ge=1, le=200)
    learning_rate: float = Field(0.3, gt=0, le=1)
    lambda_l2: float = Field(10.0, ge=0, description="Shrinks the offsets of levels with few rows.")
    min_child_samples: int = Field(100, ge=1)


class IntervalsConfig(_Frozen):
    """Growth only: 10% and 90% quantile models of log growth, trained like the point model but
    on a seeded share ``row_rate`` of the training rows (quantile leaves are refitted on every
    row they hold, which makes these models slower than the point model)."""

    enabled: bool = True
    row_rate: float = Field(0.3, gt=0, le=1)


class TuningConfig(_Frozen):
    """Optional Optuna search on the validation batches (``n_trials: 0`` turns it off)."""

    n_trials: int = Field(0, ge=0)
    timeout_s: float | None = Field(None, gt=0)


class GatesConfig(_Frozen):
    """Quality gates checked on the test batches; a failing gate fails ``lgml train`` (the
    bundle is still written, for inspection). ``beat_rules``: the model's AUC must exceed the
    rule check's in both populations (designation), or its R² the linear baseline's (growth)."""

    auc_min: float | None = Field(None, ge=0, le=1)
    ece_max: float | None = Field(None, ge=0, le=1)
    beat_rules: bool = True
    r2_min: float | None = Field(None, le=1)


with warnings.catch_warnings():
    # "register" only shadows ABCMeta.register on the class, never the field on instances.
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class MLflowConfig(_Frozen):
        """Experiment tracking and model registry."""

        enabled: bool = True
        tracking_uri: str | None = None
        experiment: str = "lgml"
        register: bool = Field(True, description="Register the model and set its alias.")


class TrainConfig(_Frozen):
    """Everything ``lgml train`` needs. Load with :meth:`from_file`."""

    task: Task
    horizon: int = Field(1, ge=1, le=3, description="Designation only: the target is designation in one of the "
                         "next ``horizon`` batches (t+1 .. t+horizon) for a firm holding no title at the end of t.")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    seed: int = 0
    data: DataConfig
    split: SplitConfig
    lightgbm: LightGBMConfig = LightGBMConfig()
    monotone: dict[str, Literal[-1, 1]] = Field(default_factory=dict)
    level_adjust: LevelAdjustConfig = LevelAdjustConfig()
    calibration: Calibration = "spline"
    extra_features: list[Literal["holds_title"]] = Field(
        default_factory=list, description="Flags of the feature table also used as model inputs "
                                          "(holds_title: designation lifts later growth).")
    criteria_features: Literal["margins", "per_regime"] = Field(
        "margins", description="How the criteria enter the model: margins and met flags per criterion concept, "
                               "the same under every rule regime (default), or the pass flags and shortfalls "
                               "named by each regime's criteria, missing outside that regime.")
    intervals: IntervalsConfig = IntervalsConfig()
    macro_growth: float | None = Field(
        None, gt=-1, allow_inf_nan=False, description="Growth only: the year's growth level as a rate (0.05 = 5%), e.g. a published "
                                 "forecast of industrial value added; default: the mean of recent years.")
    level_years: int = Field(3, ge=1, le=10, description="Growth only: recent fiscal years averaged for the "
                                                          "year's level when macro_growth is not given.")
    tuning: TuningConfig = TuningConfig()
    gates: GatesConfig = GatesConfig()
    mlflow: MLflowConfig = MLflowConfig()
    models_dir: Path = Path("models")

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        # Growth has no probability to calibrate: default its calibration to "none".
        if isinstance(data, dict) and data.get("task") == "growth" and "calibration" not in data:
            data = {**data, "calibration": "none"}
        return data

    @field_validator("monotone")
    @classmethod
    def _known_features(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            return value
        from lgml.features import CATEGORICAL
        from lgml.vocabulary import FEATURE_DIMENSIONS

        unknown = sorted(set(value) - set(FEATURE_DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; allowed: {sorted(set(FEATURE_DIMENSIONS) - set(CATEGORICAL))}")
        categorical = sorted(set(value) & set(CATEGORICAL))
        if categorical:
            raise ValueError(f"categorical feature(s) {categorical} cannot be monotone")
        return value

    @model_validator(mode="after")
    def _task_fields(self) -> TrainConfig:
        if self.horizon != 1 and self.task != "designation":
            raise ValueError(f"horizon applies to task 'designation', not {self.task!r}")
        if self.task == "growth":
            if self.calibration != "none":
                raise ValueError("calibration must be 'none' for task 'growth'")
            if self.gates.auc_min is not None or self.gates.ece_max is not None:
                raise ValueError("gates auc_min/ece_max apply to tasks 'designation' and 'review', not 'growth'")
            if self.lightgbm.imbalance != "none" or self.lightgbm.negative_rate < 1:
                raise ValueError("lightgbm.imbalance and lightgbm.negative_rate apply to tasks 'designation' "
                                 "and 'review' only")
        elif self.gates.r2_min is not None:
            raise ValueError(f"gate r2_min applies to task 'growth', not {self.task!r}")
        elif self.macro_growth is not None:
            raise ValueError(f"macro_growth applies to task 'growth', not {self.task!r}")
        metric = self.lightgbm.metric
        binary = self.task in BINARY_TASKS
        if metric is not None and (metric in BINARY_METRICS) != binary:
            allowed = BINARY_METRICS if binary else ("l2", "l1", "huber")
            raise ValueError(f"lightgbm.metric {metric!r} does not fit task {self.task!r}; allowed: {', '.join(allowed)}")
        return self

    # --- I/O ---------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, text: str, source: str = "<config>") -> TrainConfig:
        """Parse and validate YAML text.

        Raises:
            ConfigError: Invalid YAML or a schema violation (each bad key named by its path).
        """
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of keys at the top level")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(format_errors(exc, source)) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TrainConfig:
        """Load a YAML config file (see ``configs/``).

        Raises:
            ConfigError: The file is missing or invalid.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
        return cls.from_yaml(text, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (paths as strings, ``None`` as null)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The fully resolved config as YAML; ``from_yaml(to_yaml())`` gives an equal config."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def config_hash(self) -> str:
        """sha256 of the resolved config (canonical JSON)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    @property
    def bundle_dir(self) -> Path:
        """Folder of this config's model bundle: ``models_dir / name``."""
        return self.models_dir / self.name


# --- Readable validation errors ------------------------------------------------------------

def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the (sub)model found at ``loc`` (the parent of an unknown key)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        annotation = current.model_fields[part].annotation
        candidates = [a for a in (get_args(annotation) or (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        current = candidates[0] if candidates else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def format_errors(exc: ValidationError, source: str = "<config>") -> str:
    """One line per error: ``key.path: problem (allowed: ...)``."""
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        path = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(TrainConfig, loc[:-1])
            msg = "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)
