"""The plant's configuration files: hierarchy, sensor catalogue and manufacturer profiles.

Every problem is reported with the file, the line and what is wrong, because the person reading it
is standing next to a line with a text editor, not a debugger.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from linewatch.detect.settings import AnomalySettings


class ConfigProblem(BaseModel):
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """One or more problems in the configuration; str() lists them one per line."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ---------------------------------------------------------------- models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensorSpec(_Strict):
    unit: str
    range: tuple[float, float]
    description: str = ""
    quantity: str | None = None  # e.g. temperature: the same quantity ...
    position: str | None = None  # ... at different positions is a different canonical sensor

    @field_validator("range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] >= v[1]:
            raise ValueError(f"range must be [low, high] with low < high, got {list(v)}")
        return v


class Catalogue(_Strict):
    sensors: dict[str, SensorSpec]


class Calibration(_Strict):
    """Per-machine correction applied after unit conversion: canonical = value * scale + offset."""

    scale: float = 1.0
    offset: float = 0.0


class RunningWhen(_Strict):
    """The machine counts as running while this sensor is above this value (gates stuck-sensor checks)."""

    sensor: str
    above: float


class MachineSpec(_Strict):
    id: str
    kind: str
    manufacturer: str
    vendor_ids: list[str] = Field(default_factory=list)
    calibration: dict[str, Calibration] = Field(default_factory=dict)
    running_when: RunningWhen | None = None


class LineSpec(_Strict):
    name: str
    description: str = ""
    machines: list[MachineSpec]


class AreaSpec(_Strict):
    name: str
    lines: list[LineSpec]


class FailureRateSettings(_Strict):
    baseline_units: int = Field(1000, ge=100)
    baseline_rate: float | None = Field(None, gt=0, lt=1)
    target_arl0_units: int = Field(10000, ge=100)
    shift_ratio: float = Field(3.0, gt=1.0)
    clear_after_units: int = Field(300, ge=10)


class DataQualitySettings(_Strict):
    stale_after_seconds: float = Field(60.0, gt=0)  # no reading for this long (line clock): stale_stream
    flatline_readings: int = Field(60, ge=3)  # identical values this many times while running: stuck sensor
    missing_readings: int = Field(10, ge=1)  # an expected sensor absent this many readings in a row
    max_future_seconds: float | None = Field(300.0, gt=0)  # readings further ahead of the wall clock are rejected
    # readings and QC results dated before this are rejected (bad_timestamp): a controller whose clock
    # was reset (a flat battery, a firmware update) counts from 1970 or 2000; lower it to replay older data
    earliest_timestamp: datetime = datetime(2001, 1, 1, tzinfo=timezone.utc)

    @field_validator("earliest_timestamp")
    @classmethod
    def _in_utc(cls, ts: datetime) -> datetime:
        return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
    clear_after_seconds: float = Field(60.0, gt=0)


class GenealogySettings(_Strict):
    """Failure rate per machine: unit and batch ids on readings link QC results to the machines that made them."""

    per_machine: bool = True  # one failure-rate monitor per machine, fed through the genealogy
    horizon_units: int = Field(50_000, ge=100)  # recent units remembered (LRU), about 400 bytes each
    horizon_batches: int = Field(5_000, ge=10)  # recent batches remembered (LRU)
    # a machine on more than this share of a line's attributed QC results (the only extruder, the QC
    # station) says nothing the line's own monitor does not: its verdicts never alarm
    line_wide_share: float = Field(0.9, gt=0.0, le=1.0)
    # each machine's in-control average run length: with several machines watched at once, each needs a
    # longer one than the line's for false alarms on the line as a whole to stay as rare
    target_arl0_units: int = Field(100_000, ge=100)


class DetectionSettings(_Strict):
    escalate_after_seconds: float | None = Field(900.0, gt=0)  # a warning that persists this long becomes critical
    anomaly: AnomalySettings = AnomalySettings()
    failure_rate: FailureRateSettings = FailureRateSettings()
    data_quality: DataQualitySettings = DataQualitySettings()
    genealogy: GenealogySettings = GenealogySettings()


class UnknownMachines(_Strict):
    """What to do with messages from machines plant.yaml does not list."""

    policy: Literal["reject", "accept"] = "reject"
    profile: str | None = None  # with accept: the manufacturer profile to read them with
    line: str | None = None  # with accept: the line they are counted on

    @model_validator(mode="after")
    def _accept_needs_profile(self) -> "UnknownMachines":
        if self.policy == "accept" and not (self.profile and self.line):
            raise ValueError("policy accept needs a profile (manufacturer) and a line")
        return self


class PlantSpec(_Strict):
    site: str
    areas: list[AreaSpec]
    detection: DetectionSettings = DetectionSettings()
    unknown_machines: UnknownMachines = UnknownMachines()


class MachineIdSpec(_Strict):
    from_: Literal["key", "topic", "field"] = Field(alias="from")
    path: str | None = None

    @model_validator(mode="after")
    def _path_for_field(self) -> "MachineIdSpec":
        if self.from_ == "field" and not self.path:
            raise ValueError("machine_id from: field needs a path")
        return self


class TimestampSpec(_Strict):
    path: str
    format: Literal["epoch_s", "epoch_ms", "epoch_us", "iso", "iso_local"]
    timezone: str | None = None

    @model_validator(mode="after")
    def _tz_for_local(self) -> "TimestampSpec":
        if self.format == "iso_local" and not self.timezone:
            raise ValueError("timestamp format iso_local needs a timezone (e.g. Europe/Berlin)")
        if self.timezone:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {self.timezone!r}") from None
        return self


class SensorMapping(_Strict):
    sensor: str
    path: str | None = None
    tag: str | None = None
    unit: str | None = None
    # a tag list names a unit per value: besides ``unit`` and the catalogue's unit, these (and no
    # others) are accepted and converted; a message naming any other unit is rejected as bad_unit
    units: list[str] = Field(default_factory=list)
    scale: float = 1.0
    offset: float = 0.0


class QcSpec(_Strict):
    unit_id_path: str | None = None
    batch_id_path: str | None = None
    verdict_path: str
    pass_values: list[str | bool | int]
    fail_values: list[str | bool | int]
    defect_path: str | None = None
    test: str
    test_path: str | None = None  # field naming the test when one station reports several (else ``test``)


Aggregation = Literal["mean", "max", "min", "rms", "last"]


class AggregateSpec(_Strict):
    """Fold a fast stream (e.g. 10 Hz vibration) into one canonical reading per period."""

    period_seconds: float = Field(gt=0)
    default: Aggregation = "mean"
    sensors: dict[str, Aggregation] = Field(default_factory=dict)


class ProfileSpec(_Strict):
    manufacturer: str
    payload: Literal["flat", "nested", "tags"]
    machine_id: MachineIdSpec
    timestamp: TimestampSpec
    sensors: list[SensorMapping]
    tags_path: str | None = None
    unit_id_path: str | None = None  # part/bag id carried by a reading (genealogy)
    batch_id_path: str | None = None  # lot id carried by a reading
    recipe_path: str | None = None  # product/recipe being run: the machine gets one anomaly model per recipe
    aggregate: AggregateSpec | None = None
    qc: QcSpec | None = None

    @model_validator(mode="after")
    def _shape(self) -> "ProfileSpec":
        for i, m in enumerate(self.sensors):
            if self.payload == "tags" and not m.tag:
                raise ValueError(f"sensors[{i}] ({m.sensor}): a tag-list profile maps by 'tag'")
            if self.payload != "tags" and not m.path:
                raise ValueError(f"sensors[{i}] ({m.sensor}): a {self.payload} profile maps by 'path'")
        if self.payload == "tags" and not self.tags_path:
            raise ValueError("a tag-list profile needs tags_path (where the list of tags is)")
        mapped = [m.sensor for m in self.sensors]
        twice = sorted({s for s in mapped if mapped.count(s) > 1})
        if twice:
            raise ValueError(f"sensors map more than one field onto {', '.join(twice)}")
        if self.aggregate:
            extra = sorted(set(self.aggregate.sensors) - set(mapped))
            if extra:
                raise ValueError(f"aggregate names sensors this profile does not map: {', '.join(extra)}")
        return self


# ---------------------------------------------------------------- the loaded whole


@dataclass(frozen=True)
class Machine:
    id: str
    line: str
    area: str
    kind: str
    manufacturer: str
    vendor_ids: tuple[str, ...]
    calibration: dict[str, Calibration] = field(default_factory=dict)
    running_when: RunningWhen | None = None


@dataclass(frozen=True)
class PlantConfig:
    """Everything in configs/: validated, cross-checked, ready for the pipeline."""

    directory: Path
    site: str
    machines: dict[str, Machine]
    catalogue: Catalogue
    profiles: dict[str, ProfileSpec]
    detection: DetectionSettings
    unknown_machines: UnknownMachines = UnknownMachines()

    @property
    def lines(self) -> list[str]:
        return sorted({m.line for m in self.machines.values()})

    def machines_on(self, line: str) -> list[Machine]:
        return [m for m in self.machines.values() if m.line == line]


def default_config_dir() -> Path:
    """configs/ beside the checkout, else the copy bundled in the installed package."""
    env = os.environ.get("LINEWATCH_CONFIG_DIR")
    if env:
        return Path(env)
    cwd = Path.cwd() / "configs"
    if (cwd / "plant.yaml").exists():
        return cwd
    repo = Path(__file__).resolve().parents[2] / "configs"
    if (repo / "plant.yaml").exists():
        return repo
    return Path(str(resources.files("linewatch") / "_configs"))


def load_config(directory: Path | None = None) -> PlantConfig:
    """Load and cross-check plant.yaml, catalogue.yaml and manufacturers/*.yaml.

    Raises ConfigError listing every problem found, each with file and line.
    """
    directory = Path(directory) if directory else default_config_dir()
    problems: list[ConfigProblem] = []

    plant = _load_model(directory / "plant.yaml", PlantSpec, problems)
    catalogue = _load_model(directory / "catalogue.yaml", Catalogue, problems)
    profiles: dict[str, ProfileSpec] = {}
    profile_files: dict[str, Path] = {}
    manu_dir = directory / "manufacturers"
    files = sorted(manu_dir.glob("*.yaml")) + sorted(manu_dir.glob("*.yml")) if manu_dir.is_dir() else []
    if not files:
        problems.append(ConfigProblem(file=str(manu_dir), line=None, message="no manufacturer profiles (*.yaml) found"))
    broken: set[str] = set()  # manufacturers whose profile failed: do not also report them as missing
    for path in files:
        profile = _load_model(path, ProfileSpec, problems)
        if profile is None:
            broken.add(_raw_manufacturer(path))
            continue
        if profile.manufacturer in profiles:
            problems.append(ConfigProblem(file=str(path), line=_line_of(path, ["manufacturer"]),
                                          message=f"manufacturer {profile.manufacturer!r} is already defined in {profile_files[profile.manufacturer]}"))
            continue
        profiles[profile.manufacturer] = profile
        profile_files[profile.manufacturer] = path
        for loc, message in _id_field_problems(profile):
            problems.append(ConfigProblem(file=str(path), line=_line_of(path, loc), message=message))

    if catalogue is not None:
        from linewatch.normalize.units import check_unit

        for name, spec in catalogue.sensors.items():
            err = check_unit(spec.unit)
            if err:
                problems.append(ConfigProblem(file=str(directory / "catalogue.yaml"),
                                              line=_line_of(directory / "catalogue.yaml", ["sensors", name, "unit"]),
                                              message=f"sensors.{name}.unit: {err}"))
        for manufacturer, profile in profiles.items():
            path = profile_files[manufacturer]
            for i, mapping in enumerate(profile.sensors):
                spec = catalogue.sensors.get(mapping.sensor)
                if spec is None:
                    problems.append(ConfigProblem(file=str(path), line=_line_of(path, ["sensors", i]),
                                                  message=f"sensors[{i}]: {mapping.sensor!r} is not in the catalogue (catalogue.yaml)"))
                    continue
                from linewatch.normalize.units import conversion

                for unit in ([mapping.unit] if mapping.unit else []) + mapping.units:
                    try:
                        conversion(unit, spec.unit)
                    except ValueError as exc:
                        problems.append(ConfigProblem(file=str(path), line=_line_of(path, ["sensors", i]),
                                                      message=f"sensors[{i}] ({mapping.sensor}): {exc}"))
                if mapping.units and not mapping.tag:
                    problems.append(ConfigProblem(file=str(path), line=_line_of(path, ["sensors", i]),
                                                  message=f"sensors[{i}] ({mapping.sensor}): units: only a tag list "
                                                          "names a unit per value; give this mapping a tag or drop units"))

    machines: dict[str, Machine] = {}
    if plant is not None:
        plant_file = directory / "plant.yaml"
        seen_vendor: dict[str, str] = {}
        for ai, area in enumerate(plant.areas):
            for li, line in enumerate(area.lines):
                for mi, m in enumerate(line.machines):
                    loc = ["areas", ai, "lines", li, "machines", mi]
                    if m.id in machines:
                        problems.append(ConfigProblem(file=str(plant_file), line=_line_of(plant_file, loc + ["id"]),
                                                      message=f"machine id {m.id!r} appears twice"))
                    if m.manufacturer not in profiles and m.manufacturer not in broken:
                        problems.append(ConfigProblem(file=str(plant_file), line=_line_of(plant_file, loc + ["manufacturer"]),
                                                      message=f"machine {m.id!r}: no profile for manufacturer {m.manufacturer!r} "
                                                              f"(known: {', '.join(sorted(profiles)) or 'none'})"))
                    for vid in m.vendor_ids:
                        if vid in seen_vendor and seen_vendor[vid] != m.id:
                            problems.append(ConfigProblem(file=str(plant_file), line=_line_of(plant_file, loc + ["vendor_ids"]),
                                                          message=f"vendor id {vid!r} is used by {seen_vendor[vid]!r} and {m.id!r}"))
                        seen_vendor[vid] = m.id
                    if catalogue is not None:
                        named = [(s, loc + ["calibration", s]) for s in m.calibration]
                        if m.running_when:
                            named.append((m.running_when.sensor, loc + ["running_when", "sensor"]))
                        for sensor, where in named:
                            if sensor not in catalogue.sensors:
                                problems.append(ConfigProblem(file=str(plant_file), line=_line_of(plant_file, where),
                                                              message=f"machine {m.id!r}: {sensor!r} is not in the catalogue"))
                    machines[m.id] = Machine(id=m.id, line=line.name, area=area.name, kind=m.kind,
                                             manufacturer=m.manufacturer, vendor_ids=tuple(m.vendor_ids),
                                             calibration=dict(m.calibration), running_when=m.running_when)
        unknown = plant.unknown_machines
        if unknown.policy == "accept":
            lines = {ln.name for a in plant.areas for ln in a.lines}
            if unknown.profile not in profiles and unknown.profile not in broken:
                problems.append(ConfigProblem(file=str(plant_file), line=_line_of(plant_file, ["unknown_machines", "profile"]),
                                              message=f"unknown_machines.profile: no profile for manufacturer {unknown.profile!r}"))
            if unknown.line not in lines:
                problems.append(ConfigProblem(file=str(plant_file), line=_line_of(plant_file, ["unknown_machines", "line"]),
                                              message=f"unknown_machines.line: no line {unknown.line!r} in plant.yaml"))

    if problems:
        raise ConfigError(problems)
    assert plant is not None and catalogue is not None
    return PlantConfig(directory=directory, site=plant.site, machines=machines, catalogue=catalogue,
                       profiles=profiles, detection=plant.detection, unknown_machines=plant.unknown_machines)


def _id_field_problems(profile: ProfileSpec) -> list[tuple[list[Any], str]]:
    """Unit and batch ids (genealogy) need fields of their own: a field already read as a sensor value,
    the timestamp or the machine id would link every reading to a nonsense unit, silently."""
    taken = {m.path: f"sensor {m.sensor}" for m in profile.sensors if m.path}
    taken[profile.timestamp.path] = "the timestamp"
    if profile.machine_id.path:
        taken[profile.machine_id.path] = "the machine id"
    if profile.tags_path:
        taken[profile.tags_path] = "the tag list"
    out: list[tuple[list[Any], str]] = []
    for name in ("unit_id_path", "batch_id_path", "recipe_path"):
        value = getattr(profile, name)
        if value is not None and value in taken:
            out.append(([name], f"{name}: {value!r} is already read as {taken[value]}"))
    if profile.unit_id_path is not None and profile.unit_id_path == profile.batch_id_path:
        out.append((["batch_id_path"], f"batch_id_path: {profile.batch_id_path!r} is also unit_id_path; "
                                       "a unit and its batch need fields of their own"))
    qc = profile.qc
    if qc is not None:
        if qc.unit_id_path is not None and qc.unit_id_path == qc.batch_id_path:
            out.append((["qc", "batch_id_path"], f"qc.batch_id_path: {qc.batch_id_path!r} is also qc.unit_id_path; "
                                                 "a unit and its batch need fields of their own"))
        for name in ("unit_id_path", "batch_id_path", "test_path"):
            value = getattr(qc, name)
            if value is not None and value == qc.verdict_path:
                out.append((["qc", name], f"qc.{name}: {value!r} is the verdict field"))
    return out


# ---------------------------------------------------------------- YAML with line numbers


def _load_model(path: Path, model: type[BaseModel], problems: list[ConfigProblem]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(ConfigProblem(file=str(path), line=None, message="file not found"))
        return None
    except UnicodeDecodeError as exc:
        problems.append(ConfigProblem(file=str(path), line=None, message=f"not UTF-8 text ({exc.reason})"))
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problems.append(ConfigProblem(file=str(path), line=line, message=f"invalid YAML: {getattr(exc, 'problem', exc)}"))
        return None
    if not isinstance(data, dict):
        problems.append(ConfigProblem(file=str(path), line=1, message="expected a mapping at the top level"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = list(err["loc"])
            dotted = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(ConfigProblem(file=str(path), line=_locate(node, loc),
                                          message=f"{dotted}: {_plain(err)}"))
        return None


def _raw_manufacturer(path: Path) -> str:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return str(data.get("manufacturer", "")) if isinstance(data, dict) else ""
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return ""


def _plain(err: Mapping[str, Any]) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown setting (check the spelling)"
    if err["type"] == "missing":
        return "required setting is missing"
    return msg.removeprefix("Value error, ")


def _locate(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """Line (1-based) of the deepest YAML node that a pydantic error location reaches."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    child = v if not isinstance(v, yaml.ScalarNode) else k
                    if isinstance(v, yaml.ScalarNode):
                        return k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            return line
        node = child
        line = node.start_mark.line + 1
    return line


def _line_of(path: Path, loc: list[Any]) -> int | None:
    try:
        return _locate(yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader), loc)
    except (OSError, yaml.YAMLError):
        return None
