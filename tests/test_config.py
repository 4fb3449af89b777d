import shutil
from pathlib import Path

import pytest

from linewatch.config import ConfigError, default_config_dir, load_config


def test_default_configs_load(config):
    assert set(config.machines) == {"extruder-1", "cutter-1", "dryer-1", "checkweigher-1"}
    assert config.machines["cutter-1"].manufacturer == "schneidwerk"
    assert config.lines == ["line-1"]
    assert {"extrutec", "schneidwerk", "thermaflow", "weighpro"} <= set(config.profiles)


@pytest.fixture
def configs(tmp_path) -> Path:
    target = tmp_path / "configs"
    shutil.copytree(default_config_dir(), target)
    return target


def _problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    return [str(p) for p in info.value.problems]


def test_dimension_mismatch_names_file_and_line(configs):
    path = configs / "manufacturers" / "extrutec.yaml"
    text = path.read_text().replace("sensor: barrel_temperature, unit: degF", "sensor: barrel_temperature, unit: psi")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "unit: psi}" in t and "barrel" in t)
    [problem] = _problems(configs)
    assert problem.startswith(f"{path}:{line}:")
    assert "cannot convert psi" in problem and "degC" in problem


def test_unknown_setting_and_missing_field_are_located(configs):
    path = configs / "plant.yaml"
    text = path.read_text().replace("    warmup_readings: 400", "    warmup_reading: 400")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "warmup_reading:" in t)
    problems = _problems(configs)
    assert any(p.startswith(f"{path}:{line}:") and "unknown setting" in p for p in problems), problems


def test_unknown_manufacturer_and_sensor(configs):
    plant = configs / "plant.yaml"
    plant.write_text(plant.read_text().replace("manufacturer: thermaflow", "manufacturer: thermoflow"))
    prof = configs / "manufacturers" / "weighpro.yaml"
    prof.write_text(prof.read_text().replace("sensor: product_weight", "sensor: product_mass"))
    problems = "\n".join(_problems(configs))
    assert "no profile for manufacturer 'thermoflow'" in problems
    assert "'product_mass' is not in the catalogue" in problems


def test_invalid_yaml_reports_the_line(configs):
    path = configs / "catalogue.yaml"
    lines = path.read_text().splitlines()
    lines.insert(5, "  broken: [unclosed")
    path.write_text("\n".join(lines) + "\n")
    [problem] = _problems(configs)
    assert problem.startswith(str(path)) and "invalid YAML" in problem


def test_iso_local_needs_a_real_time_zone(configs):
    path = configs / "manufacturers" / "schneidwerk.yaml"
    path.write_text(path.read_text().replace("timezone: Europe/Berlin", "timezone: Europe/Atlantis"))
    [problem] = _problems(configs)
    assert "unknown time zone 'Europe/Atlantis'" in problem


def test_genealogy_settings_load_and_are_located(configs):
    assert load_config(configs).detection.genealogy.horizon_units == 50_000
    path = configs / "plant.yaml"
    text = path.read_text().replace("horizon_units: 50000", "horizon_units: 10")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "horizon_units: 10" in t)
    [problem] = _problems(configs)
    assert problem.startswith(f"{path}:{line}:") and "detection.genealogy.horizon_units" in problem


def test_an_id_field_that_is_already_a_sensor_is_located(configs):
    path = configs / "manufacturers" / "schneidwerk.yaml"
    text = path.read_text().replace("batch_id_path: data.piece.lot", "batch_id_path: data.knife.speed")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("batch_id_path:"))
    [problem] = _problems(configs)
    assert problem.startswith(f"{path}:{line}:")
    assert "'data.knife.speed' is already read as sensor knife_speed" in problem


def test_unit_and_batch_ids_need_fields_of_their_own(configs):
    path = configs / "manufacturers" / "weighpro.yaml"
    text = path.read_text().replace("  batch_id_path: lot", "  batch_id_path: bag")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "batch_id_path: bag" in t)
    [problem] = _problems(configs)
    assert problem.startswith(f"{path}:{line}:") and "also qc.unit_id_path" in problem
