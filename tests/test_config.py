"""Training config: loading, rejections with readable messages, round trip."""

from pathlib import Path

import pytest

from lgml.config import ConfigError, TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

MINIMAL = """
task: designation
name: test-designation
data: {simulate: {firms: 3000, seed: 1}}
split: {train_until: 2022, valid: [2023], test: [2024, 2025]}
"""


def load(text: str) -> TrainConfig:
    return TrainConfig.from_yaml(text, source="test.yaml")


def test_minimal_config_gets_defaults():
    cfg = load(MINIMAL)
    assert cfg.calibration == "spline"
    assert cfg.lightgbm.deterministic and cfg.lightgbm.force_row_wise and cfg.lightgbm.num_threads == 2
    assert cfg.mlflow.enabled and cfg.mlflow.register and cfg.mlflow.tracking_uri is None
    assert cfg.bundle_dir == Path("models/test-designation")
    params = cfg.lightgbm.params(cfg.task, cfg.seed)
    assert params["seed"] == cfg.seed and params["objective"] == "binary"


def test_growth_defaults_to_no_calibration():
    cfg = load(MINIMAL.replace("task: designation", "task: growth"))
    assert cfg.calibration == "none"
    assert cfg.lightgbm.params(cfg.task, cfg.seed)["objective"] == "regression"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path):
    cfg = TrainConfig.from_file(path)
    assert TrainConfig.from_yaml(cfg.to_yaml()) == cfg
    assert cfg.config_hash() == TrainConfig.from_yaml(cfg.to_yaml()).config_hash()


def test_round_trip_through_a_file(tmp_path):
    cfg = load(MINIMAL + "monotone: {rd_intensity: 1, debt_ratio: -1}\ncalibration: platt\n")
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    again = TrainConfig.from_file(path)
    assert again == cfg
    assert "None" not in path.read_text()  # None is written as null


def test_config_is_frozen():
    cfg = load(MINIMAL)
    with pytest.raises(Exception):
        cfg.seed = 3


@pytest.mark.parametrize("extra, expected", [
    ("lightgbm: {leaves: 7}", ["lightgbm.leaves: unknown key", "num_leaves"]),
    ("data2: 1", ["data2: unknown key", "allowed keys:", "split"]),
    ("mlflow: {registry: true}", ["mlflow.registry: unknown key", "register"]),
])
def test_unknown_keys_are_named_with_their_path(extra, expected):
    with pytest.raises(ConfigError) as err:
        load(MINIMAL + extra + "\n")
    for text in expected:
        assert text in str(err.value)


def test_unknown_nested_data_key():
    with pytest.raises(ConfigError, match=r"data\.simulate\.n_firms: unknown key; allowed keys: firms, seed"):
        load(MINIMAL.replace("firms: 3000", "n_firms: 3000"))


@pytest.mark.parametrize("extra, expected", [
    ("calibration: sigmoid", "calibration: Input should be 'spline', 'isotonic', 'platt' or 'none'"),
    ("lightgbm: {imbalance: smote}", "lightgbm.imbalance: Input should be 'none', 'is_unbalance' or 'scale_pos_weight'"),
    ("monotone: {rd_intensity: 2}", "monotone.rd_intensity: Input should be -1 or 1"),
])
def test_bad_enum_values_list_the_allowed_ones(extra, expected):
    with pytest.raises(ConfigError) as err:
        load(MINIMAL + extra + "\n")
    assert expected in str(err.value)


def test_bad_task_lists_allowed_tasks():
    with pytest.raises(ConfigError, match="task: Input should be 'designation', 'growth' or 'review'"):
        load(MINIMAL.replace("task: designation", "task: ranking"))


@pytest.mark.parametrize("split, expected", [
    ("{train_until: 2022, valid: [2023], test: [2023, 2024]}", "valid and test share batch years [2023]"),
    ("{train_until: 2023, valid: [2023], test: [2024]}", "must all come after train_until=2023"),
    ("{train_until: 2021, valid: [2024], test: [2023]}", "must all come after valid"),
    ("{train_until: 2021, valid: [2022, 2022], test: [2023]}", "repeats a batch year"),
    ("{train_until: 2021, valid: [], test: [2023]}", "split.valid"),
])
def test_overlapping_or_unordered_splits_are_rejected(split, expected):
    text = MINIMAL.replace("split: {train_until: 2022, valid: [2023], test: [2024, 2025]}", f"split: {split}")
    with pytest.raises(ConfigError) as err:
        load(text)
    assert expected in str(err.value)


def test_monotone_features_must_exist_and_be_numeric():
    with pytest.raises(ConfigError, match=r"monotone: unknown feature\(s\) \['rd_intensty'\]; allowed:"):
        load(MINIMAL + "monotone: {rd_intensty: 1}\n")
    with pytest.raises(ConfigError, match="cannot be monotone"):
        load(MINIMAL + "monotone: {province: 1}\n")


def test_data_needs_exactly_one_source():
    both = MINIMAL.replace("data: {simulate: {firms: 3000, seed: 1}}",
                           "data: {simulate: {firms: 3000}, panel: p.parquet, events: e.parquet}")
    with pytest.raises(ConfigError, match="not both"):
        load(both)
    with pytest.raises(ConfigError, match="both 'panel' and 'events'"):
        load(MINIMAL.replace("data: {simulate: {firms: 3000, seed: 1}}", "data: {panel: p.parquet}"))
    files = load(MINIMAL.replace("data: {simulate: {firms: 3000, seed: 1}}",
                                 "data: {panel: p.csv, events: e.csv, units: wan}"))
    assert files.data.units == "wan" and files.data.truth is None


def test_task_specific_settings_are_checked():
    with pytest.raises(ConfigError, match="calibration must be 'none' for task 'growth'"):
        load(MINIMAL.replace("task: designation", "task: growth") + "calibration: isotonic\n")
    with pytest.raises(ConfigError, match="r2_min applies to task 'growth'"):
        load(MINIMAL + "gates: {r2_min: 0.2}\n")
    with pytest.raises(ConfigError, match="lightgbm.metric 'l2' does not fit task 'designation'"):
        load(MINIMAL + "lightgbm: {metric: l2}\n")


def test_unreadable_inputs(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        TrainConfig.from_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load("task: [designation\n")
    with pytest.raises(ConfigError, match="mapping"):
        load("- a\n- b\n")
