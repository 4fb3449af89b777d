"""Replay of real, labelled datasets (SKAB, SECOM) as vendor payloads, like any machine's.

The replay sends what the files hold, not what we think they mean: the original column names, number
texts and naive timestamp strings go out verbatim, and the dataset's manufacturer profile
(configs/datasets/<name>/) does the conversion. That way a replay tests the same normalisation a
real vendor goes through, quirks of the data included.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from linewatch.domain import RawMessage
from linewatch.sources.simulator import SimulatedMessage

UTC = timezone.utc
RAW_PREFIX = "linewatch.raw."
QC_TOPIC = "linewatch.qc"
SKAB_TZ = "Europe/Moscow"  # the testbed's naive clock (UTC+3, no DST)
SECOM_TZ = "UTC"  # SECOM does not say where the fab is
SECOM_MACHINE = "secom-fab"
SECOM_FILE = "uci-secom.csv.zip"
SKAB_LABELS = ("anomaly", "changepoint")  # ground truth: for evaluation, never sent by a machine
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Replay:
    """A dataset ready to stream; topics and total let the caller create topics and show progress."""

    topics: tuple[str, ...]
    total: int  # messages the replay yields
    _messages: Callable[[], Iterator[SimulatedMessage]]

    def __iter__(self) -> Iterator[SimulatedMessage]:
        return self._messages()


# ---------------------------------------------------------------- payloads


def _number(token: str) -> str | None:
    """The cell as JSON number text, verbatim when it already is one; None for an empty or NaN cell."""
    token = token.strip()
    if _JSON_NUMBER.fullmatch(token):
        return token
    if not token:
        return None
    value = float(token)  # "1.", "+2", "nan": say it the JSON way, and a missing value is a gap
    return repr(value) if value == value and abs(value) != float("inf") else None


def _payload(fields: Iterable[tuple[str, str]]) -> bytes:
    """A JSON object from (name, JSON text) pairs, so number texts keep their exact digits."""
    return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields) + "}").encode()


def _utc(local: str, tz: ZoneInfo) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=tz).astimezone(UTC)


def _read(path: Path, **kwargs: object) -> pd.DataFrame:
    """Every cell as the text in the file: no float parsing, no NaN guessing."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, **kwargs)  # type: ignore[call-overload]


# ---------------------------------------------------------------- SKAB


def skab_files(path: Path) -> list[Path]:
    """The run files under a SKAB directory (or the one file given), in a stable order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no SKAB data at {path}")
    files = sorted(path.rglob("*.csv"), key=lambda p: (p.parent.name, int(p.stem) if p.stem.isdigit() else -1, p.stem))
    if not files:
        raise FileNotFoundError(f"no *.csv files under {path}")
    return files


def skab_machine_id(file: Path) -> str:
    """valve1/3.csv -> skab-valve1-3; anomaly-free/anomaly-free.csv -> skab-anomaly-free."""
    folder, stem = file.parent.name, file.stem
    return f"skab-{stem}" if stem == folder else f"skab-{folder}-{stem}"


def replay_skab(path: Path, raw_prefix: str = RAW_PREFIX, timezone_name: str = SKAB_TZ) -> Replay:
    """One machine per run file; the runs are merged on their own clocks, as if recorded side by side."""
    tz = ZoneInfo(timezone_name)
    runs = [(skab_machine_id(f), _read(f, sep=";")) for f in skab_files(path)]
    for machine, frame in runs:
        if "datetime" not in frame.columns:
            raise ValueError(f"{machine}: no 'datetime' column (is it a ';'-separated SKAB file?)")

    def run(machine: str, frame: pd.DataFrame) -> Iterator[SimulatedMessage]:
        topic, key = f"{raw_prefix}{machine}", machine.encode()
        columns = ["datetime", *(c for c in frame.columns if c not in (*SKAB_LABELS, "datetime"))]
        for row in frame[columns].itertuples(index=False, name=None):
            fields = [(columns[0], json.dumps(row[0]))]
            fields += [(c, n) for c, cell in zip(columns[1:], row[1:]) if (n := _number(cell)) is not None]
            yield SimulatedMessage(_utc(row[0], tz), RawMessage(topic=topic, value=_payload(fields), key=key))

    def messages() -> Iterator[SimulatedMessage]:
        return heapq.merge(*(run(m, f) for m, f in runs), key=lambda sm: sm.ts)

    return Replay(tuple(f"{raw_prefix}{m}" for m, _ in runs), sum(len(f) for _, f in runs), messages)


def skab_messages(path: Path, raw_prefix: str = RAW_PREFIX) -> Iterator[SimulatedMessage]:
    """SKAB's messages, when the caller needs neither topics nor a count."""
    return iter(replay_skab(path, raw_prefix))


# ---------------------------------------------------------------- SECOM


def repair_secom_time(text: str) -> str:
    """Undo the known defect of the Kaggle SECOM CSV: where the day is 12 or less, month and day are
    swapped ("2008-01-08 ..." is 1 August 2008). Repaired, the 1,567 units run in order from
    2008-07-19 to 2008-10-17 as the UCI description says; unrepaired, the clock jumps back six times.

    >>> repair_secom_time("2008-01-08 02:02:00"), repair_secom_time("2008-07-19 11:55:00")
    ('2008-08-01 02:02:00', '2008-07-19 11:55:00')
    """
    date, _, clock = text.partition(" ")
    year, month, day = date.split("-")
    if int(day) <= 12:
        month, day = day, month
    return f"{year}-{month}-{day}" + (f" {clock}" if clock else "")


def replay_secom(path: Path, raw_prefix: str = RAW_PREFIX, qc_topic: str = QC_TOPIC,
                 machine: str = SECOM_MACHINE, timezone_name: str = SECOM_TZ, repair_dates: bool = True) -> Replay:
    """Per unit, in file order: its sensor vector on the raw topic, then its verdict on the QC topic.

    Empty cells are left out of the payload: a sensor without a value is a gap, not a reading.
    Dates are repaired (see repair_secom_time) unless ``repair_dates`` is False.
    """
    path = Path(path)
    file = path / SECOM_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no SECOM data at {file}")
    tz = ZoneInfo(timezone_name)
    frame = _read(file)
    sensors = [c for c in frame.columns if c not in ("Time", "Pass/Fail")]
    topic, key = f"{raw_prefix}{machine}", machine.encode()

    def messages() -> Iterator[SimulatedMessage]:
        for n, row in enumerate(frame[["Time", "Pass/Fail", *sensors]].itertuples(index=False, name=None), start=1):
            ts_text, verdict, cells = row[0], row[1], row[2:]
            if repair_dates:
                ts_text = repair_secom_time(ts_text)
            head = [("Time", json.dumps(ts_text)), ("unit", json.dumps(f"secom-{n:04d}"))]
            values = [(c, v) for c, cell in zip(sensors, cells) if (v := _number(cell)) is not None]
            outcome = ("Pass/Fail", _number(verdict) or json.dumps(verdict))  # not a number: the profile rejects it
            ts = _utc(ts_text, tz)
            yield SimulatedMessage(ts, RawMessage(topic=topic, value=_payload(head + values), key=key))
            yield SimulatedMessage(ts, RawMessage(topic=qc_topic, value=_payload([*head, outcome]), key=key))

    return Replay((topic, qc_topic), 2 * len(frame), messages)


def secom_messages(path: Path, raw_prefix: str = RAW_PREFIX, qc_topic: str = QC_TOPIC) -> Iterator[SimulatedMessage]:
    """SECOM's messages, when the caller needs neither topics nor a count."""
    return iter(replay_secom(path, raw_prefix, qc_topic))
