"""Model bundles: a trained model and everything needed to score with it, as plain files.

A bundle is a folder::

    model.txt            LightGBM text model (point model)
    model_p10.txt        growth only, optional: 10% quantile model
    model_p90.txt        growth only, optional: 90% quantile model
    calibration.json     calibrator (isotonic thresholds / Platt coefficients / none)
    context.parquet      optional: province/sector records the features were built with
    reference.json       optional: drift reference profile of the training rows
                         (:func:`lgml.modeling.drift.reference_profile`)
    metadata.json        task, features, dtypes, category levels, groups, hashes, versions
    evaluation.json      test metrics (see lgml.modeling.evaluate)
    config.yaml          the resolved training config
    plots/*.png          evaluation plots
    manifest.json        sha256 of every other file

It is written atomically (a temporary folder beside the target, then renamed). On load every file
is checked against the manifest, and the metadata, the calibration and each model text are checked
for the shapes the loader relies on before LightGBM reads a model (:mod:`lgml.modeling.integrity`).
Nothing is pickled. This module is the only reader and writer of bundle files.

Example:
    >>> bundle = load_bundle("models/lgml-designation")  # doctest: +SKIP
    >>> p = bundle.predict(feature_table)  # calibrated probabilities, shape (n,)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lgml.config import BINARY_TASKS, TrainConfig
from lgml.io import refuse_existing, sweep_stale, temp_prefix
from lgml.modeling.calibrate import Calibrator, calibrator_from_dict
from lgml.modeling.integrity import check_calibration, check_metadata, check_model_text, verify_manifest, write_manifest
# BundleInputError is defined with the encoding that raises it; callers catch it from here.
from lgml.modeling.matrix import BundleInputError, lightgbm_matrix, model_frame

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
CONTEXT_FILE = "context.parquet"
REFERENCE_FILE = "reference.json"
PLOTS_DIR = "plots"
QUANTILE_FILES = {"p10": "model_p10.txt", "p90": "model_p90.txt"}
REQUIRED_METADATA = ("task", "features", "categorical_levels")
VERSIONED_PACKAGES = ("lightgbm", "numpy", "pandas", "scikit-learn", "lgml")


class BundleError(RuntimeError):
    """A bundle folder is incomplete, altered or unreadable."""


class BundleVersionWarning(UserWarning):
    """A bundle was saved with different package versions than those installed."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a bundle depends on, plus Python."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """Commit of the working tree holding the lgml package (``+dirty`` if modified), or None."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def _figure_png(figure: Any) -> bytes:
    if isinstance(figure, (bytes, bytearray)):
        return bytes(figure)
    from lgml.modeling.plots import png_bytes

    return png_bytes(figure)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one atomic step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``); False where the system or file system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` onto ``target``, replacing any previous bundle.

    Where the system allows, the two folders are exchanged in one atomic step, so that ``target``
    always holds a whole bundle, the old or the new. Elsewhere the old bundle is moved aside, the
    new one in, and the old one put back if that fails.
    """
    if not target.exists():
        os.replace(tmp, target)
        return
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old bundle
        return
    old = Path(tempfile.mkdtemp(prefix=temp_prefix(target) + "old-", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_bundle(
    directory: str | os.PathLike,
    *,
    booster: Any,
    calibrator: Calibrator | None,
    metadata: dict,
    evaluation: dict,
    config: TrainConfig,
    plots: dict[str, Any],
    quantile_boosters: dict[str, Any] | None = None,
    context: pd.DataFrame | None = None,
    reference: dict | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a bundle folder atomically.

    Args:
        directory: Bundle folder, e.g. ``models/lgml-designation``.
        booster: Trained ``lightgbm.Booster`` (log-odds for designation, log growth for growth).
        calibrator: Fitted calibrator for designation; None for growth.
        metadata: At least ``task``, ``features`` (ordered names) and ``categorical_levels``;
            usually also ``dtypes``, ``feature_groups``, ``monotone``, ``data_hash``, ``seed``.
            Package versions, the config hash, the git commit and the models' sha256 are added.
        evaluation: JSON-compatible metrics (NaN is written as null).
        config: The resolved training config.
        plots: ``name -> matplotlib Figure or PNG bytes``; written as ``plots/<name>.png``.
        quantile_boosters: Growth only: ``{"p10": Booster, "p90": Booster}``.
        context: Province/sector records (:func:`lgml.features.context_tables`) of the
            training panel, so that scoring builds the same features; ``context.parquet``.
        reference: Drift reference profile of the training rows
            (:func:`lgml.modeling.drift.reference_profile`); ``reference.json``.
        overwrite: Replace an existing bundle; if false an existing folder raises.

    Returns:
        The bundle folder.

    Raises:
        FileExistsError: The folder exists and ``overwrite`` is false.
        ValueError: ``metadata`` lacks a required key or a quantile name is unknown.
    """
    directory = Path(directory)
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {missing}")
    unknown = sorted(set(quantile_boosters or {}) - set(QUANTILE_FILES))
    if unknown:
        raise ValueError(f"unknown quantile model(s) {unknown}; allowed: {sorted(QUANTILE_FILES)}")
    refuse_existing(directory, overwrite)
    directory.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(directory)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(directory), suffix=".tmp", dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a bundle is as readable as any folder the user makes
    try:
        booster.save_model(tmp / MODEL_FILE)
        hashes = {MODEL_FILE: sha256_file(tmp / MODEL_FILE)}
        for name, model in sorted((quantile_boosters or {}).items()):
            model.save_model(tmp / QUANTILE_FILES[name])
            hashes[QUANTILE_FILES[name]] = sha256_file(tmp / QUANTILE_FILES[name])
        if context is not None:
            context.to_parquet(tmp / CONTEXT_FILE, index=False)
            hashes[CONTEXT_FILE] = sha256_file(tmp / CONTEXT_FILE)
        if reference is not None:
            _write_json(tmp / REFERENCE_FILE, _jsonable(reference))
            hashes[REFERENCE_FILE] = sha256_file(tmp / REFERENCE_FILE)
        _write_json(tmp / "calibration.json", calibrator.to_dict() if calibrator is not None else {"method": None})
        meta = {**metadata, "config_hash": config.config_hash(), "package_versions": package_versions(),
                "git_commit": git_commit(), "sha256": hashes, "model_sha256": hashes[MODEL_FILE]}
        _write_json(tmp / "metadata.json", _jsonable(meta))
        _write_json(tmp / "evaluation.json", _jsonable(evaluation))
        (tmp / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
        if plots:
            (tmp / PLOTS_DIR).mkdir()
            for name, figure in plots.items():
                (tmp / PLOTS_DIR / f"{name}.png").write_bytes(_figure_png(figure))
        write_manifest(tmp)
        _replace_dir(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote bundle %s", directory)
    return directory


def _jsonable(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays and NaN/inf (-> None) for strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclass
class Bundle:
    """A loaded model bundle. Build with :func:`load_bundle`.

    Attributes:
        booster: LightGBM point model.
        calibrator: Fitted calibrator (designation) or None (growth).
        metadata: Contents of ``metadata.json``.
        evaluation: Contents of ``evaluation.json``.
        config: The training config.
        path: Bundle folder.
        quantile_boosters: ``{"p10": Booster, "p90": Booster}`` when present.
        context: Province/sector records of the training panel, or None.
        reference: Drift reference profile of the training rows
            (:func:`lgml.modeling.drift.reference_profile`), or None for bundles saved without.
    """

    booster: Any
    calibrator: Calibrator | None
    metadata: dict
    evaluation: dict
    config: TrainConfig
    path: Path
    quantile_boosters: dict[str, Any] = field(default_factory=dict)
    context: pd.DataFrame | None = None
    reference: dict | None = None

    @property
    def name(self) -> str:
        """The model's name: the training config's ``name``, else the bundle folder's name."""
        return str(self.metadata.get("name") or getattr(self.config, "name", None) or self.path.name)

    @property
    def version(self) -> str:
        """The registered or recorded version, else ``sha256:`` and the first 12 hex digits of
        the model file's sha256 (never the package version: two models of one lgml release
        differ)."""
        version = (self.metadata.get("version") or self.metadata.get("registered_version")
                   or self.evaluation.get("version"))
        return str(version) if version else f"sha256:{(self.metadata.get('model_sha256') or '')[:12]}"

    @property
    def task(self) -> str:
        """``designation``, ``growth`` or ``review``."""
        return self.metadata["task"]

    @property
    def horizon(self) -> int:
        """Batches a designation model looks ahead (``metadata["horizon"]``; 1 for bundles
        without it and for other tasks)."""
        return int(self.metadata.get("horizon") or 1)

    @property
    def features(self) -> list[str]:
        """Model input columns, in model order."""
        return list(self.metadata["features"])

    @property
    def categorical_levels(self) -> dict[str, list[str]]:
        """Fixed category levels of the categorical inputs."""
        return {k: list(v) for k, v in self.metadata["categorical_levels"].items()}

    def prepare(self, table: pd.DataFrame) -> pd.DataFrame:
        """Model input frame from a feature table (see :func:`lgml.features.build_features`).

        Selects and orders the feature columns by name, casts categoricals to the stored levels
        and every other feature to float.

        Args:
            table: DataFrame of shape (n_rows, >= n_features); extra columns are ignored.

        Returns:
            DataFrame of shape (n_rows, n_features), a new frame.

        Raises:
            BundleInputError: Missing columns, unseen category levels (with counts) or values
                that are not numbers. Nothing is silently turned into NaN.
        """
        try:
            return model_frame(table, self.features, self.categorical_levels)
        except BundleInputError as exc:
            raise BundleInputError(f"bundle {self.path.name}: {exc}") from None

    def model_matrix(self, table: pd.DataFrame) -> np.ndarray:
        """The float matrix the booster predicts from (:meth:`prepare`, then categoricals as
        codes of the stored levels, NaN missing); shape (n_rows, n_features), row-major.

        Raises:
            BundleInputError: As :meth:`prepare`.
        """
        return lightgbm_matrix(self.prepare(table), self.booster.pandas_categorical)

    def predict_raw(self, table: pd.DataFrame) -> np.ndarray:
        """Uncalibrated model output of shape (n_rows,): log-odds for designation, expected
        log growth ``log(revenue[t+1] / revenue[t])`` for growth."""
        return self.raw_from_matrix(self.model_matrix(table))

    def raw_from_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`predict_raw` of a :meth:`model_matrix`. Large matrices are predicted by the
        compiled kernel of :mod:`lgml.kernels.forest` (the same values as LightGBM)."""
        from lgml.kernels import forest

        return forest.predict(self.booster, matrix, raw_score=self.task in BINARY_TASKS)

    def predict(self, table: pd.DataFrame, *, macro_growth: float | None = None) -> np.ndarray:
        """Calibrated probability of designation in the next batch (designation), or expected
        log growth (growth: the model's growth relative to the year plus the year's level,
        :meth:`growth_level`); shape (n_rows,)."""
        if self.task in BINARY_TASKS:
            return self.calibrator.transform(self.predict_raw(table))
        return self.predict_growth(table, macro_growth=macro_growth, interval=False)["growth"]

    def predict_growth(self, table: pd.DataFrame, *, macro_growth: float | None = None,
                       interval: bool = True) -> dict[str, Any]:
        """Growth only, every output at once (the model matrix and the level are formed once):
        ``growth`` (level + relative growth), ``growth_p10``/``growth_p90`` (with ``interval``
        and quantile models; p10 <= p90), ``growth_level`` (arrays of shape (n_rows,)) and
        ``growth_level_source`` (one line, see :meth:`growth_level`)."""
        from lgml.kernels import forest

        shift, source = self.growth_level(table, macro_growth=macro_growth)
        frame = self.prepare(table)
        out: dict[str, Any] = {"growth": forest.predict(self.booster, lightgbm_matrix(frame, self.booster.pandas_categorical))
                               + shift}
        if interval and set(self.quantile_boosters) == set(QUANTILE_FILES):
            lo, hi = (forest.predict(b, lightgbm_matrix(frame, b.pandas_categorical))
                      for b in (self.quantile_boosters[k] for k in ("p10", "p90")))
            out.update(growth_p10=np.minimum(lo, hi) + shift, growth_p90=np.maximum(lo, hi) + shift)
        out.update(growth_level=shift, growth_level_source=source)
        return out

    def growth_level(self, table: pd.DataFrame, *, macro_growth: float | None = None) -> tuple[np.ndarray, str]:
        """Growth only: the year's level added to each row's relative growth (log growth, shape
        (n_rows,)) and its source (see :mod:`lgml.modeling.level`): ``macro_growth`` when given,
        else the training config's ``macro_growth``, else the mean of the recent years' levels
        stored at training. Rows without a ``year`` column are taken as the year after the latest
        stored level. Bundles saved before the level was kept apart predict absolute growth:
        their level is 0.

        Raises:
            lgml.modeling.level.LevelError: ``macro_growth`` is not a rate above -1.
            BundleError: ``macro_growth`` given to a bundle that predicts absolute growth.
            BundleInputError: A ``year`` that is not a whole number.
        """
        from lgml.modeling.level import growth_level

        stored = self.metadata.get("growth_level")
        if not stored:
            if macro_growth is not None:
                raise BundleError(f"bundle {self.path.name} predicts absolute growth; it takes no macro_growth")
            return np.zeros(len(table)), "none: the model predicts absolute growth"
        levels = {int(y): float(v) for y, v in stored["levels"].items()}
        if "year" in table.columns:
            years = pd.to_numeric(table["year"], errors="coerce").to_numpy(dtype=float)
            if np.isnan(years).any():
                raise BundleInputError(f"bundle {self.path.name}: column 'year' must be a whole fiscal year in every row")
            years = years.astype("int64")
        else:  # rows without a year (e.g. a pyfunc request): the year after the latest known level
            years = np.full(len(table), max(levels) + 1, dtype="int64")
        given = macro_growth if macro_growth is not None else stored.get("macro_growth")
        return growth_level(years, levels, recent_years=int(stored["recent_years"]), macro_growth=given)

    def predict_interval(self, table: pd.DataFrame, *, macro_growth: float | None = None) -> np.ndarray:
        """Growth only: 10% and 90% quantiles of log growth (level included, as :meth:`predict`),
        shape (n_rows, 2), columns (p10, p90), with p10 <= p90.

        Raises:
            BundleError: The bundle has no quantile models.
        """
        if set(self.quantile_boosters) != set(QUANTILE_FILES):
            raise BundleError(f"bundle {self.path} has no quantile models (task {self.task})")
        out = self.predict_growth(table, macro_growth=macro_growth)
        return np.column_stack([out["growth_p10"], out["growth_p90"]])

    def stored_plots(self) -> dict[str, bytes]:
        """The evaluation plots saved at training (``plots/<name>.png``): name -> PNG bytes,
        sorted by name; empty when the bundle has none."""
        folder = self.path / PLOTS_DIR
        if not folder.is_dir():
            return {}
        return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _check_versions(saved: dict[str, str | None], path: Path) -> None:
    now = package_versions()
    diff = {k: (v, now.get(k)) for k, v in saved.items() if k != "python" and now.get(k) != v}
    if diff:
        text = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(diff.items()))
        warnings.warn(f"bundle {path} was saved with other package versions: {text}", BundleVersionWarning,
                      stacklevel=3)


def load_bundle(directory: str | os.PathLike) -> Bundle:
    """Load a bundle folder, verifying every file before any is used.

    Every file is checked against ``manifest.json``; the metadata and the calibration are checked
    for the shapes the loader relies on, and each model text is parsed
    (:func:`lgml.modeling.integrity.check_model_text`: whole trees, features those of the
    metadata in the same order) before LightGBM reads it. Warns with
    :class:`BundleVersionWarning` when package versions differ from the saved ones.

    Raises:
        BundleError: A file is missing, altered, unlisted or malformed, or the files disagree.
    """
    import lightgbm as lgb

    path = Path(directory)
    needed = (MODEL_FILE, "calibration.json", "metadata.json", "evaluation.json", "config.yaml")
    absent = [n for n in needed if not (path / n).is_file()]
    if absent:
        raise BundleError(f"{path} is not a complete bundle: missing {', '.join(absent)}")
    try:
        if not verify_manifest(path):
            log.warning("bundle %s has no manifest.json (saved by an older lgml): only its model files are "
                        "checked against their sha256; save it again to have every file checked", path)
        metadata = _read_json(path / "metadata.json")
        check_metadata(metadata)
        hashes = metadata.get("sha256") or {MODEL_FILE: metadata.get("model_sha256")}
        for name, expected in hashes.items():
            if not (path / name).is_file():
                raise ValueError(f"{name} is listed in metadata.json but missing")
            if sha256_file(path / name) != expected:
                raise ValueError(f"{name} does not match its sha256 in metadata.json (altered?)")
        cal = _read_json(path / "calibration.json")
        check_calibration(cal, metadata["task"])
        texts = {MODEL_FILE: (path / MODEL_FILE).read_text(encoding="utf-8")}
        texts.update({f: (path / f).read_text(encoding="utf-8") for f in QUANTILE_FILES.values() if f in hashes})
        for name, text in texts.items():
            try:
                check_model_text(text, metadata["features"])
            except ValueError as exc:
                raise ValueError(f"{name} {exc}") from None
        evaluation = _read_json(path / "evaluation.json")
        reference = _read_json(path / REFERENCE_FILE) if (path / REFERENCE_FILE).is_file() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: {exc}") from None
    _check_versions(metadata.get("package_versions", {}), path)
    quantiles = {k: lgb.Booster(model_str=texts[f]) for k, f in QUANTILE_FILES.items() if f in texts}
    return Bundle(
        booster=lgb.Booster(model_str=texts[MODEL_FILE]),
        calibrator=calibrator_from_dict(cal) if cal.get("method") else None,
        metadata=metadata,
        evaluation=evaluation,
        config=TrainConfig.from_file(path / "config.yaml"),
        path=path,
        quantile_boosters=quantiles,
        context=pd.read_parquet(path / CONTEXT_FILE) if (path / CONTEXT_FILE).is_file() else None,
        reference=reference,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not valid JSON ({exc})") from None


def open_bundle(spec: str | os.PathLike, dst: str | os.PathLike | None = None) -> Bundle:
    """Load a bundle from a folder or an MLflow URI (``models:/name@alias``, ``models:/name/3``,
    ``runs:/<id>/model``): the one way every command opens a model.

    Args:
        spec: Bundle folder or MLflow URI.
        dst: Folder to download an MLflow model into (a temporary folder if None).

    Raises:
        FileNotFoundError: The folder does not exist.
        BundleError: The folder is not a complete, intact bundle.
        ValueError: The MLflow location holds no lgml model, or MLflow cannot resolve the URI.
    """
    if ":/" in str(spec):
        from lgml.tracking import load_model  # mlflow is imported only for URIs

        return load_model(str(spec), dst=dst)
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"{spec}: no such bundle folder (nor an MLflow URI such as models:/<name>@champion)")
    return load_bundle(path)
