"""Experiment tracking and the model registry (MLflow). The only module that imports mlflow;
other modules import this one inside the functions that need it.

Where runs go: the config's ``mlflow.tracking_uri``, else the environment's
``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``. With a SQLite store the artifacts
go beside the database, in ``mlruns/<experiment>/``.

A training run logs the flattened config as params, the flattened ``evaluation.json`` as
metrics, the whole bundle folder (plots included) under ``bundle/``, and the model as an
``mlflow.pyfunc`` model under ``model``. The pyfunc model is logged as code (no pickle): it
carries the bundle files and a copy of the ``lgml`` package, and scores with
:func:`lgml.modeling.bundle.load_bundle`. Registered versions get the alias ``candidate``, and
``champion`` when the quality gates passed.

Example:
    >>> result = log_training("models/lgml-designation", config)  # doctest: +SKIP
    >>> bundle = load_model("models:/lgml-designation@champion")  # doctest: +SKIP
    >>> p = bundle.predict(feature_table)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, Schema

from lgml.config import BINARY_TASKS
from lgml.modeling.bundle import Bundle, load_bundle

if TYPE_CHECKING:
    from lgml.config import MLflowConfig, TrainConfig

log = logging.getLogger(__name__)

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlruns"
MODEL_ARTIFACT = "model"  # runs:/<run_id>/model
BUNDLE_ARTIFACT = "bundle"  # run artifact folder and pyfunc artifact name
CANDIDATE, CHAMPION = "candidate", "champion"
# Per-group tables of evaluation.json not logged as metrics: hundreds of series would bury the
# headline metrics in MLflow's charts.
DETAIL_SECTIONS = ("by_province", "by_sector", "calibration_curve")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
# What the pyfunc model needs at load time besides mlflow (which MLflow pins itself).
PIP_PACKAGES = ("lightgbm", "numpy", "pandas", "pyarrow", "scikit-learn", "pydantic", "pyyaml")
_MODEL_CODE = '''"""lgml pyfunc model, logged as code: scores with the bundle in the model's artifacts."""
import mlflow

from lgml.tracking import LgmlModel

mlflow.models.set_model(LgmlModel())
'''


class TrackingError(ValueError):
    """MLflow could not resolve or download a model URI (unknown model, version or alias,
    unreachable store); the message names the URI and the tracking store."""


@dataclass(frozen=True)
class TrackingResult:
    """Where :func:`log_training` put a run.

    Attributes:
        run_id: MLflow run id.
        experiment_id: MLflow experiment id.
        model_uri: URI of the logged pyfunc model (``models:/<model_id>``).
        model_name: Registered model name, or None when not registered.
        model_version: Registered version number, or None.
        aliases: Aliases set on that version (``candidate``, maybe ``champion``); empty when
            the model was unchanged.
        tracking_uri: The tracking store used.
        unchanged: The registered model already had a version with the same model file, config
            and data (``model_version``): no new version was registered, no alias moved.
    """

    run_id: str
    experiment_id: str
    model_uri: str
    model_name: str | None
    model_version: int | None
    aliases: list[str] = field(default_factory=list)
    tracking_uri: str = ""
    unchanged: bool = False


# --- Where runs go ---------------------------------------------------------------------------

def resolve_tracking_uri(settings: MLflowConfig | None = None, cwd: str | os.PathLike | None = None) -> str:
    """The tracking URI: ``settings.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<cwd>/mlflow.db`` (an explicit SQLite URI, never MLflow's own default, which
    turns to a ``./mlruns`` file store MLflow 3 refuses to open when such a folder exists).

    Args:
        settings: The config's ``mlflow`` section; None for no configured URI.
        cwd: Folder of the default database; the current directory if None.

    Returns:
        A tracking URI, e.g. ``sqlite:////home/me/lgml/mlflow.db``.
    """
    if settings is not None and settings.tracking_uri:
        return settings.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(cwd if cwd is not None else os.getcwd()).resolve()
    if _holds_file_store(root / ARTIFACT_DIR) and not (root / DB_FILE).exists():
        log.warning("%s holds runs of an old MLflow file store, which MLflow 3 no longer opens; new runs "
                    "go to %s. Import the old ones with: mlflow migrate-filestore --source %s --target "
                    "sqlite:///%s", root / ARTIFACT_DIR, root / DB_FILE, root, root / DB_FILE)
    return f"sqlite:///{root / DB_FILE}"


def _holds_file_store(folder: Path) -> bool:
    """True if ``folder`` looks like an MLflow file store (``<experiment id>/meta.yaml``)."""
    try:
        return any(p.name.isdigit() and (p / "meta.yaml").exists() for p in folder.iterdir())
    except OSError:
        return False


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifact location of a new experiment: ``<db folder>/mlruns/<experiment>`` as a file
    URI for a SQLite store; None (the server's choice) for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = tracking_uri.removeprefix("sqlite:///").split("?")[0]
    if db in ("", ":memory:"):
        return None
    slug = re.sub(r"[^\w.-]+", "_", experiment).strip("._") or "default"
    return (Path(db).resolve().parent / ARTIFACT_DIR / slug).as_uri()


def _experiment_id(client: mlflow.MlflowClient, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(tracking_uri, name))
        except MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ValueError(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore "
                         f"--experiment-id {experiment.experiment_id}) or set another mlflow.experiment")
    return experiment.experiment_id


@contextmanager
def _using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` for the block only.

    The fluent API (``start_run``, ``log_model``) and MLflow's resolution of ``models:/`` URIs
    use the global setting. ``mlflow.set_tracking_uri`` also writes ``$MLFLOW_TRACKING_URI``,
    so both are put back as they were: a setting left behind would silently override later
    changes of the environment variable.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    explicit = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        # An explicit setting equal to the environment variable is indistinguishable from none.
        mlflow.set_tracking_uri(explicit if explicit != env else None)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


@contextmanager
def _quiet_artifact_transfers() -> Iterator[None]:
    """No progress bars for local artifact copies (they would clutter the CLI's output)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


# --- Params, metrics, tags -------------------------------------------------------------------

def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys: ``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _valid_name(name: str) -> str:
    """A key MLflow accepts as param or metric name (letters, digits, ``_-. /``)."""
    return re.sub(r"[^A-Za-z0-9_.\- /]", "_", name)


def run_params(config: TrainConfig, metadata: dict[str, Any]) -> dict[str, str]:
    """MLflow params: the resolved config (``lightgbm.learning_rate``, ``seed``, ``split.test``,
    …), the LightGBM parameters actually used (``lightgbm_params.*``: objective, tuned values,
    class weight) and ``best_iteration``. Lists as JSON; unset (None) values left out."""
    tree = {**config.to_dict(), "lightgbm_params": metadata.get("lightgbm_params"),
            "best_iteration": metadata.get("best_iteration")}
    params = {}
    for key, value in flatten(tree).items():
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        params[_valid_name(key)] = text[:MAX_PARAM_LENGTH]
    return params


def evaluation_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """Numeric leaves of ``evaluation.json`` as metrics: ``populations`` unprefixed
    (``all.model.auc``, ``pool.oracle.auc``), the rest by their path (``gates.passed``,
    ``n_rows``); booleans as 0/1. Missing values, strings, lists and the per-group tables
    (:data:`DETAIL_SECTIONS`) are left out: they stay in the logged ``evaluation.json``."""
    tree = {k: v for k, v in evaluation.items() if k not in DETAIL_SECTIONS and k != "populations"}
    tree.update(evaluation.get("populations") or {})
    metrics = {}
    for key, value in flatten(tree).items():
        if isinstance(value, (bool, int, float)):
            metrics[_valid_name(key)] = float(value)
    return metrics


def _tags(bundle: Bundle) -> dict[str, str]:
    meta = bundle.metadata
    tags = {"task": bundle.task, "horizon": meta.get("horizon", 1), "data_hash": meta.get("data_hash"), "git_commit": meta.get("git_commit"),
            "config_hash": meta.get("config_hash"), "model_sha256": meta.get("model_sha256"),
            "gates_passed": str(gates_passed(bundle.evaluation)).lower()}
    return {k: str(v) for k, v in tags.items() if v is not None}


def gates_passed(evaluation: dict[str, Any]) -> bool:
    """True when ``evaluation["gates"]["passed"]`` is true."""
    gates = evaluation.get("gates")
    return isinstance(gates, dict) and gates.get("passed") is True


# --- The pyfunc model ------------------------------------------------------------------------

def output_columns(bundle: Bundle) -> list[str]:
    """Columns of :func:`predictions` for ``bundle``."""
    if bundle.task == "review":
        return ["p_review_pass"]
    if bundle.task == "designation":
        horizon = int(bundle.metadata.get("horizon", 1))
        return ["p_designation" if horizon == 1 else f"p_designation_h{horizon}"]
    return ["growth", "growth_p10", "growth_p90"] if bundle.quantile_boosters else ["growth"]


def predictions(bundle: Bundle, table: pd.DataFrame) -> pd.DataFrame:
    """Predictions of ``bundle`` as a frame with the index of ``table``.

    Returns:
        DataFrame of shape (n_rows, k): ``p_designation`` (calibrated probability of
        designation in the next batch; ``p_designation_h2``/``_h3`` within the next 2 or 3
        batches for a model of that horizon) for designation; ``p_review_pass`` (probability
        of keeping the title at the re-review of the next batch) for review; ``growth`` (expected log revenue
        growth), plus ``growth_p10``/``growth_p90`` when the bundle has quantile models.
    """
    columns = output_columns(bundle)
    if bundle.task in BINARY_TASKS:
        return pd.DataFrame({columns[0]: bundle.predict(table)}, index=table.index)
    out = bundle.predict_growth(table)
    return pd.DataFrame({c: out[c] for c in columns}, index=table.index)


def signature(bundle: Bundle) -> ModelSignature:
    """Input and output schema of the pyfunc model.

    Categorical features are strings (as they arrive from JSON or CSV requests); the model
    restores the bundle's category levels. The flags a config adds as inputs
    (``extra_features``, e.g. ``holds_title``) are booleans, as the feature table holds them.
    Every other feature is a double. Growth models also
    take an optional ``year`` (the fiscal year t, which picks the year's growth level; without
    it rows are taken as the year after the latest level the bundle knows).
    """
    from lgml.features import FLAG_GROUPS

    levels = bundle.categorical_levels
    kind = {**dict.fromkeys(levels, "string"), **dict.fromkeys(FLAG_GROUPS, "boolean")}
    columns = [ColSpec(kind.get(name, "double"), name) for name in bundle.features]
    if bundle.task == "growth" and "year" not in bundle.features:  # picks the year's growth level
        columns.append(ColSpec("long", "year", required=False))
    inputs = Schema(columns)
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", c) for c in output_columns(bundle)]))


class LgmlModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc model over an lgml bundle (logged as code; nothing is pickled).

    Input: a feature table with the bundle's features, categoricals as strings (MLflow checks
    the input against the signature before ``predict``, and it rejects pandas categoricals:
    cast them with ``table.astype({c: "str" for c in CATEGORICAL})``, or load the bundle
    itself with :func:`load_model`). Output: see :func:`predictions`.
    """

    bundle: Bundle | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        # Bundle.prepare casts the strings back to the stored category levels and reports
        # unseen levels instead of scoring them as missing.
        return predictions(self.bundle, pd.DataFrame(model_input))


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc model (installed versions), so that logging does not
    spend seconds inferring them."""
    pins = []
    for name in PIP_PACKAGES:
        try:
            pins.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _log_pyfunc(bundle: Bundle, workdir: Path) -> mlflow.models.model.ModelInfo:
    code = workdir / "lgml_model.py"
    code.write_text(_MODEL_CODE, encoding="utf-8")
    with warnings.catch_warnings():
        # The signature is given explicitly; an input example would only add a predict call.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(code),
            artifacts={BUNDLE_ARTIFACT: str(bundle.path)},
            code_paths=[str(Path(__file__).resolve().parent)],
            signature=signature(bundle),
            pip_requirements=pip_requirements(),
            tags={"task": bundle.task},
        )


# --- Logging a training run -------------------------------------------------------------------

def log_training(bundle_path: str | os.PathLike, config: TrainConfig,
                 evaluation: dict[str, Any] | None = None) -> TrackingResult:
    """Log a trained bundle as one MLflow run and register it.

    Logs params (:func:`run_params`), metrics (:func:`evaluation_metrics`), tags (task, data
    hash, git commit, config hash, model sha256, gates passed), the bundle folder under
    ``bundle/`` and the pyfunc model under ``model``. With ``config.mlflow.register`` the model
    becomes a new version of the registered model ``config.name`` with the alias ``candidate``,
    and ``champion`` when ``evaluation["gates"]["passed"]`` is true (a failing version leaves
    ``champion`` where it was). A model identical to a registered version (same model sha256,
    config hash and data hash: the same config re-run on the same data) is logged as a run but
    not registered again, and no alias moves. ``config.mlflow.enabled`` is the caller's to check.

    Args:
        bundle_path: A bundle folder written by :func:`lgml.modeling.bundle.save_bundle`.
        config: The training config (its ``mlflow`` section says where and what to log).
        evaluation: Metrics to log; the bundle's ``evaluation.json`` if None.

    Returns:
        Where the run and the model went.

    Raises:
        lgml.modeling.bundle.BundleError: The folder is not a valid bundle.
        ValueError: The experiment is deleted.
    """
    started = time.perf_counter()
    bundle = load_bundle(bundle_path)
    evaluation = bundle.evaluation if evaluation is None else evaluation
    settings = config.mlflow
    uri = resolve_tracking_uri(settings)
    client = mlflow.MlflowClient(uri)
    experiment_id = _experiment_id(client, settings.experiment, uri)
    run_name = bundle.path.resolve().name
    with _using_tracking_uri(uri), _quiet_artifact_transfers(), \
            tempfile.TemporaryDirectory(prefix="lgml-mlflow-") as workdir, \
            mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=_tags(bundle)) as run:
        run_id = run.info.run_id
        mlflow.log_params(run_params(config, bundle.metadata))
        mlflow.log_artifacts(str(bundle.path), artifact_path=BUNDLE_ARTIFACT)
        info = _log_pyfunc(bundle, Path(workdir))
        # Linked to the logged model too, so the registry's model page shows them.
        mlflow.log_metrics(evaluation_metrics(evaluation), model_id=info.model_id)
        name = version = None
        aliases: list[str] = []
        unchanged = False
        if settings.register:  # inside the block: MLflow resolves the model's models:/ URI globally
            name = config.name
            version = _same_version(client, name, _tags(bundle))
            unchanged = version is not None
            if not unchanged:
                version = _register(client, name, info, run_id)
                aliases = [CANDIDATE, CHAMPION] if gates_passed(evaluation) else [CANDIDATE]
            for alias in aliases:
                client.set_registered_model_alias(name, alias, version)
    log.info("logged run %s (experiment %s%s) to %s in %.1f s", run_id, settings.experiment,
             f", {name} v{version} {'+'.join(aliases)}" if name else "", uri, time.perf_counter() - started)
    return TrackingResult(run_id=run_id, experiment_id=experiment_id, model_uri=info.model_uri, model_name=name,
                          model_version=version, aliases=aliases, tracking_uri=uri, unchanged=unchanged)


IDENTITY_TAGS = ("model_sha256", "config_hash", "data_hash")


def _same_version(client: mlflow.MlflowClient, name: str, tags: dict[str, str]) -> int | None:
    """The latest registered version of ``name`` whose run has the same model, config and data
    (:data:`IDENTITY_TAGS`), or None (also when a tag is unknown)."""
    if not all(tags.get(k) for k in IDENTITY_TAGS):
        return None
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    for v in sorted(versions, key=lambda v: -int(v.version)):
        run_tags = client.get_run(v.run_id).data.tags if v.run_id else {}
        if all(run_tags.get(k) == tags[k] for k in IDENTITY_TAGS):
            return int(v.version)
    return None


def _register(client: mlflow.MlflowClient, name: str, info: Any, run_id: str) -> int:
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source=info.model_uri, run_id=run_id, model_id=info.model_id)
    return int(version.version)


# --- Loading a model back ----------------------------------------------------------------------

def load_model(uri: str | os.PathLike, tracking_uri: str | None = None,
               dst: str | os.PathLike | None = None) -> Bundle:
    """Load a bundle from a folder or from MLflow, reading only ``model.txt`` and text files.

    Args:
        uri: A bundle folder (``models/lgml-designation``), a downloaded MLflow model folder,
            or an MLflow URI: ``models:/lgml-designation@champion``, ``models:/lgml-designation/3``,
            ``runs:/<run_id>/model``, ``runs:/<run_id>/bundle``.
        tracking_uri: Store to resolve MLflow URIs against; :func:`resolve_tracking_uri` if None.
        dst: Folder to download into; a new temporary folder if None (kept: ``bundle.path``
            points into it).

    Returns:
        The loaded :class:`~lgml.modeling.bundle.Bundle`.

    Raises:
        FileNotFoundError: A folder path that does not exist.
        ValueError: The location holds neither a bundle nor an lgml MLflow model.
        TrackingError: MLflow cannot resolve the URI (unknown model, version or alias), or the
            SQLite tracking store does not exist (it is not created).
    """
    local = Path(uri)
    if ":/" not in str(uri):
        if not local.exists():
            raise FileNotFoundError(f"{uri}: no such folder (nor an MLflow URI such as models:/<name>@champion)")
    else:
        store = tracking_uri or resolve_tracking_uri()
        _require_store(store, str(uri))
        local = _download(str(uri), store, dst)
    return load_bundle(_bundle_folder(local, str(uri)))


def _require_store(tracking_uri: str, uri: str) -> None:
    """Refuse to read from a SQLite tracking store that does not exist: MLflow would create an
    empty database there (about 1 MB) only to report that the model is unknown."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])
        if not database.is_file():
            raise TrackingError(f"cannot load {uri}: there is no tracking store at {database} (train with "
                                "MLflow tracking first, or point MLFLOW_TRACKING_URI at the store that holds it)")


def _download(uri: str, tracking_uri: str, dst: str | os.PathLike | None) -> Path:
    """Download the artifacts at an MLflow ``uri`` into ``dst`` or a new temporary folder."""
    registry_uri = os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri
    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="lgml-model-"))
    try:
        # The global setting as well: MLflow resolves models:/ URIs with a default client.
        with _using_tracking_uri(tracking_uri), _quiet_artifact_transfers():
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target),
                                                            tracking_uri=tracking_uri, registry_uri=registry_uri))
    except MlflowException as exc:
        if dst is None:
            shutil.rmtree(target, ignore_errors=True)
        raise TrackingError(f"cannot load {uri} from the tracking store {tracking_uri}: {exc.message}") from exc


def _bundle_folder(local: Path, uri: str) -> Path:
    """The bundle inside ``local``: the folder itself, or the pyfunc model's bundle artifact."""
    if (local / "model.txt").is_file():
        return local
    if (local / "MLmodel").is_file():
        artifacts = Model.load(str(local)).flavors.get("python_function", {}).get("artifacts", {})
        if BUNDLE_ARTIFACT in artifacts:
            return local / artifacts[BUNDLE_ARTIFACT]["path"]
    raise ValueError(f"{uri} holds neither an lgml bundle (model.txt) nor an lgml MLflow model")
