"""Replaying the real datasets through their manufacturer profiles, like any vendor's payloads.

The data lives outside the repository (../shared/datasets, see its README); without it these tests
skip and say where they looked. The dataset config directories are checked either way.
"""

import csv
import io
import json
import subprocess
import sys
import zipfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from linewatch.config import PlantConfig, load_config
from linewatch.domain import QcResult, Reading
from linewatch.normalize.normalizer import Normalizer
from linewatch.sources.replay import replay_secom, replay_skab, skab_files, skab_machine_id

ROOT = Path(__file__).resolve().parents[2]
DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
SKAB_SENSORS = {"Accelerometer1RMS": "pump_vibration_1", "Accelerometer2RMS": "pump_vibration_2",
                "Current": "motor_current", "Pressure": "loop_pressure", "Temperature": "motor_temperature",
                "Thermocouple": "fluid_temperature", "Voltage": "motor_voltage",
                "Volume Flow RateRMS": "loop_flow_rate"}


@pytest.fixture(scope="module")
def skab_config() -> PlantConfig:
    return load_config(ROOT / "configs" / "datasets" / "skab")


@pytest.fixture(scope="module")
def secom_config() -> PlantConfig:
    return load_config(ROOT / "configs" / "datasets" / "secom")


@pytest.fixture(scope="module")
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"the real datasets are not at {DATASETS} (optional: only the replay tests need them)")
    return DATASETS


def _skab_rows(file: Path) -> list[dict[str, str]]:
    with file.open(newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


def _secom_rows(datasets: Path) -> list[dict[str, str]]:
    with zipfile.ZipFile(datasets / "secom" / "uci-secom.csv.zip") as z:
        [name] = z.namelist()
        return list(csv.DictReader(io.TextIOWrapper(z.open(name), encoding="utf-8", newline="")))


# ---------------------------------------------------------------- configs (no data needed)


def test_dataset_configs_load(skab_config, secom_config):
    assert skab_config.lines == ["skab-testbed"] and len(skab_config.machines) == 1 + 16 + 4 + 14
    assert {"skab-anomaly-free", "skab-valve1-15", "skab-valve2-3", "skab-other-14"} <= set(skab_config.machines)
    assert set(skab_config.catalogue.sensors) == set(SKAB_SENSORS.values())
    assert skab_config.catalogue.sensors["pump_vibration_1"].unit == "g0"
    assert secom_config.lines == ["secom-line"] and set(secom_config.machines) == {"secom-fab"}
    assert len(secom_config.catalogue.sensors) == 590 and "secom_589" in secom_config.catalogue.sensors
    profile = secom_config.profiles["secom"]
    assert profile.unit_id_path == "unit" and profile.qc is not None and profile.qc.unit_id_path == "unit"


def test_generated_secom_configs_are_up_to_date():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_dataset_configs.py"), "--check"],
                         capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()


# ---------------------------------------------------------------- SKAB


def test_skab_machines_are_the_files(datasets, skab_config):
    assert {skab_machine_id(f) for f in skab_files(datasets / "skab")} == set(skab_config.machines)


@pytest.mark.parametrize("run", ["valve1/0.csv", "other/13.csv", "anomaly-free/anomaly-free.csv"])
def test_skab_rows_keep_the_file_text_and_normalise_to_its_values(datasets, skab_config, run):
    file = datasets / "skab" / run
    rows = _skab_rows(file)
    messages = list(replay_skab(file))
    assert len(messages) == len(rows) > 700
    normalizer = Normalizer(skab_config)
    moscow = timezone(timedelta(hours=3))  # UTC+3 all year, no DST
    for row, sm in zip(rows, messages):
        sent = json.loads(sm.message.value, parse_float=str, parse_int=str)
        assert sent == {k: v for k, v in row.items() if k not in ("anomaly", "changepoint")}  # the file's own text
        result = normalizer.normalize(sm.message)
        assert isinstance(result, Reading), result
        assert result.machine == skab_machine_id(file) and result.line == "skab-testbed"
        local = datetime.fromisoformat(row["datetime"]).replace(tzinfo=moscow)
        assert result.ts == sm.ts == local.astimezone(timezone.utc)
        assert result.values == {SKAB_SENSORS[c]: float(row[c]) for c in SKAB_SENSORS}


def test_skab_known_value(datasets, skab_config):
    first = next(iter(replay_skab(datasets / "skab" / "valve1" / "0.csv")))
    reading = Normalizer(skab_config).normalize(first.message)
    assert isinstance(reading, Reading)
    assert reading.ts == datetime(2020, 3, 9, 7, 14, 33, tzinfo=timezone.utc)  # 10:14:33 Moscow time
    assert reading.values["pump_vibration_1"] == 0.0265878 and reading.values["loop_flow_rate"] == 32.0


def test_whole_skab_replays_in_time_order_without_rejections(datasets, skab_config):
    replay = replay_skab(datasets / "skab")
    expected = {skab_machine_id(f): len(_skab_rows(f)) for f in skab_files(datasets / "skab")}
    normalizer = Normalizer(skab_config)
    seen: Counter[str] = Counter()
    previous = None
    for sm in replay:
        result = normalizer.normalize(sm.message)
        assert isinstance(result, Reading), result
        seen[result.machine] += 1
        assert previous is None or sm.ts >= previous  # runs merged on their own clocks
        previous = sm.ts
    assert seen == expected and replay.total == sum(expected.values())
    assert len(replay.topics) == 35


def test_cli_replay_skab_file_into_normalize(datasets, tmp_path):
    file = datasets / "skab" / "valve2" / "1.csv"
    replay = subprocess.run([sys.executable, "-m", "linewatch.cli", "replay", "skab", str(file), "--to", "stdout"],
                            capture_output=True, timeout=120, cwd=ROOT)
    assert replay.returncode == 0, replay.stderr
    lines = replay.stdout.splitlines()
    assert len(lines) == len(_skab_rows(file))
    assert set(json.loads(lines[0])) == {"topic", "key", "value"}
    norm = subprocess.run([sys.executable, "-m", "linewatch.cli", "normalize", "--config-dir",
                           str(ROOT / "configs" / "datasets" / "skab")], input=replay.stdout, capture_output=True,
                          timeout=120, cwd=ROOT)
    assert norm.returncode == 0, norm.stderr
    out = [json.loads(x) for x in norm.stdout.splitlines()]
    assert len(out) == len(lines)
    assert all("reading" in o for o in out), next(o for o in out if "reading" not in o)


# ---------------------------------------------------------------- SECOM


def test_every_secom_unit_normalises_with_its_verdict(datasets, secom_config):
    rows = _secom_rows(datasets)
    replay = replay_secom(datasets / "secom")
    normalizer = Normalizer(secom_config)
    results = [normalizer.normalize(sm.message) for sm in replay]
    readings, verdicts = results[0::2], results[1::2]
    assert len(rows) == 1567 and replay.total == len(results) == 2 * len(rows)
    assert all(isinstance(r, Reading) for r in readings), next(r for r in readings if not isinstance(r, Reading))
    assert all(isinstance(q, QcResult) for q in verdicts), next(q for q in verdicts if not isinstance(q, QcResult))
    assert sum(not q.passed for q in verdicts) == 104
    for row, reading, verdict in zip(rows, readings, verdicts):
        assert reading.unit_id == verdict.unit_id and reading.unit_id is not None
        assert verdict.passed == (row["Pass/Fail"] == "-1") and verdict.line == "secom-line"
        present = {k: v for k, v in row.items() if k not in ("Time", "Pass/Fail") and v != ""}
        assert reading.values == {f"secom_{int(k):03d}": float(v) for k, v in present.items()}  # gaps stay gaps
    assert readings[0].values["secom_000"] == 3030.93 and readings[0].unit_id == "secom-0001"


def test_secom_dates_are_repaired_unless_asked_not_to(datasets):
    """The Kaggle CSV has day and month swapped whenever the day is 12 or less (e.g. 2008-01-08 is
    1 August). Repaired, the units run in order from 2008-07-19 to 2008-10-17; the raw text is there
    for whoever asks for it."""
    rows = _secom_rows(datasets)
    raw = [json.loads(sm.message.value)["Time"] for sm in replay_secom(datasets / "secom", repair_dates=False)][0::2]
    assert raw == [r["Time"] for r in rows]
    stamps = [datetime.fromisoformat(t) for t in raw]
    assert sum(b < a for a, b in zip(stamps, stamps[1:])) > 0
    repaired = [datetime.fromisoformat(json.loads(sm.message.value)["Time"])
                for sm in replay_secom(datasets / "secom")][0::2]
    assert repaired == sorted(repaired)
    assert repaired[0].date().isoformat() == "2008-07-19" and repaired[-1].date().isoformat() == "2008-10-17"
