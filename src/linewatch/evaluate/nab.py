"""Numenta Anomaly Benchmark (NAB) scoring, written fresh with numpy.

Why NAB: it rewards a detector for finding an anomaly *early* inside its labelled window, punishes
false alarms less the closer they follow a real anomaly, and lets the same detector be judged
under three application profiles. Scores are comparable with the published NAB leaderboard when
the same data, windows and scores are used.

The method follows NAB v1.x (``nab/sweeper.py``, ``nab/optimizer.py``, ``nab/runner.py``,
``config/profiles.json`` in github.com/numenta/NAB):

1. **Probation.** The first ``min(floor(0.15 * n), 0.15 * 5000)`` rows of each file are ignored:
   detectors are still learning there. Rows in probation are neither TP, FP, FN nor TN.
2. **Per-row weight.** A row inside a window at 0-based index ``i`` is worth, if it is the
   window's earliest detection, ``tpWeight * S(-(right - i + 1) / width) / S(-1)`` where ``S`` is
   the scaled sigmoid ``2 / (1 + exp(5 x)) - 1`` (``-1`` beyond ``x > 3``). The first row of a
   window is worth exactly ``tpWeight``; the last is worth a little more than 0. A detection
   outside every window costs ``fpWeight * S((i - right_prev) / (width_prev - 1))``, measured
   from the end of the preceding window, or ``-fpWeight`` if no window precedes it.
3. **Per-window outcome.** Only the earliest detection in a window counts; a window without one
   costs ``-fnWeight``. True negatives are worth nothing.
4. **Threshold.** A row is a detection when ``anomaly_score >= threshold``. For each profile one
   threshold is chosen for the whole corpus, the one maximising the summed raw score; every
   distinct score is tried (the sweep sorts the rows once and accumulates score changes, so it
   is O(n log n), not O(n^2)).
5. **Normalisation.** ``100 * (S - S_null) / (S_perfect - S_null)``, where the null detector
   flags nothing (``S_null = -fnWeight * windows``) and the perfect detector flags each window's
   first row (``S_perfect = tpWeight * windows``).

Examples
--------
>>> import pandas as pd
>>> timestamps = pd.date_range("2024-01-01", periods=200, freq="min")
>>> windows = [(timestamps[100], timestamps[119])]
>>> scores = [0.0] * 200
>>> scores[100] = 1.0  # fires on the first row of the window
>>> result = score_file(timestamps, scores, windows, "standard")
>>> round(result.score, 6), result.threshold, result.tp, result.fp
(100.0, 1.0, 1, 0)
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_PROFILES",
    "NO_DETECTION_THRESHOLD",
    "PROBATIONARY_CAP_ROWS",
    "PROBATIONARY_PERCENT",
    "PROFILES",
    "FileScore",
    "NabResult",
    "Profile",
    "dump_windows",
    "load_data",
    "load_profiles",
    "load_scores",
    "load_windows",
    "probationary_length",
    "scaled_sigmoid",
    "score_corpus",
    "score_directory",
    "score_file",
    "threshold_curve",
]

# --- NAB constants -------------------------------------------------------------------------------

PROBATIONARY_PERCENT = 0.15
"""Share of each file ignored at its start (NAB ``Runner.probationaryPercent``)."""

PROBATIONARY_CAP_ROWS = 5000
"""Probation never exceeds ``PROBATIONARY_PERCENT * 5000`` rows (NAB ``getProbationPeriod``)."""

NO_DETECTION_THRESHOLD = 1.1
"""Threshold NAB reports for "flag nothing" (the sweep starts above every score in [0, 1])."""

_SIGMOID_STEEPNESS = 5.0  # S(x) = 2 * sigmoid(-5 x) - 1
_FAR_PAST_WINDOW = 3.0  # beyond 3 window-widths a false positive costs the full -1

TimestampLike: TypeAlias = str | datetime | pd.Timestamp | np.datetime64
Window = tuple[pd.Timestamp, pd.Timestamp]
WindowsByFile = Mapping[str, Sequence[tuple[TimestampLike, TimestampLike]]]
StrPath = str | PathLike[str]


@dataclass(frozen=True, slots=True)
class Profile:
    """An application profile: how much a TP, FP and FN weigh (NAB's cost matrix).

    ``tn_weight`` is listed in NAB's ``profiles.json`` but NAB never uses it; kept for fidelity.
    """

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0


# Weights from config/profiles.json in numenta/NAB (v1.0 onwards).
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
        Profile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
        Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
    )
}
DEFAULT_PROFILES: tuple[str, ...] = tuple(PROFILES)


@dataclass(frozen=True, slots=True)
class FileScore:
    """One file's raw (unnormalised) NAB score and row counts at the corpus threshold."""

    raw_score: float
    tp: int
    fp: int
    fn: int
    tn: int


@dataclass(frozen=True, slots=True)
class NabResult:
    """A detector's NAB result for one profile over a corpus.

    ``score`` is the normalised score (100 = perfect, 0 = flags nothing; it can be negative).
    Counts are in rows after probation, as in NAB's results CSVs: ``tp`` counts every detected
    row inside a window, not just the earliest one.
    """

    profile: str
    score: float
    raw_score: float
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    null_score: float
    perfect_score: float
    files: Mapping[str, FileScore]


# --- Small pure functions ------------------------------------------------------------------------


def probationary_length(n_rows: int, probationary_percent: float = PROBATIONARY_PERCENT) -> int:
    """Number of leading rows NAB ignores in a file of ``n_rows`` rows.

    NAB compares the row index with ``min(floor(p * n), p * 5000)``; rows below it are skipped.

    Examples
    --------
    >>> probationary_length(1000), probationary_length(6000), probationary_length(100, 0.1)
    (150, 750, 10)
    """
    limit = min(math.floor(probationary_percent * n_rows), probationary_percent * PROBATIONARY_CAP_ROWS)
    return max(0, math.ceil(limit))


def scaled_sigmoid(relative_position: float | np.ndarray) -> float | np.ndarray:
    """NAB's reward curve: ~+1 at a window's start (-1), 0 at its end (0), ~-1 after it (+1).

    Examples
    --------
    >>> [round(float(scaled_sigmoid(x)), 5) for x in (-1.0, -0.5, 0.0, 1.0, 4.0)]
    [0.98661, 0.84828, 0.0, -0.98661, -1.0]
    """
    x = np.asarray(relative_position, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(_SIGMOID_STEEPNESS * x)) - 1.0
    value = np.where(x > _FAR_PAST_WINDOW, -1.0, value)
    return float(value) if value.ndim == 0 else value


_MAX_TP = float(scaled_sigmoid(-1.0))  # reward of a window's first row before scaling to tpWeight


def _resolve_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise KeyError(f"unknown NAB profile {profile!r}; known: {', '.join(PROFILES)}") from None


# --- Loading -------------------------------------------------------------------------------------


def load_windows(path: StrPath) -> dict[str, list[Window]]:
    """Read windows from a NAB ``combined_windows.json``: relative CSV path -> [[start, end], ...].

    Examples
    --------
    >>> import json, tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "combined_windows.json")
    ...     with open(p, "w") as f:
    ...         json.dump({"a/b.csv": [["2014-04-10 07:15:00.000000", "2014-04-11 16:45:00.000000"]]}, f)
    ...     load_windows(p)["a/b.csv"]
    [(Timestamp('2014-04-10 07:15:00'), Timestamp('2014-04-11 16:45:00'))]
    """
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object mapping CSV paths to window lists")
    windows: dict[str, list[Window]] = {}
    for relpath, limits in raw.items():
        parsed: list[Window] = []
        for limit in limits:
            if len(limit) != 2:
                raise ValueError(f"{path}: window {limit!r} of {relpath!r} is not [start, end]")
            parsed.append((pd.Timestamp(limit[0]), pd.Timestamp(limit[1])))
        windows[relpath] = parsed
    return windows


def dump_windows(windows: WindowsByFile, path: StrPath) -> None:
    """Write windows in NAB's ``combined_windows.json`` format (timestamps as NAB prints them)."""
    out = {
        relpath: [
            [pd.Timestamp(start).strftime("%Y-%m-%d %H:%M:%S.%f"), pd.Timestamp(end).strftime("%Y-%m-%d %H:%M:%S.%f")]
            for start, end in limits
        ]
        for relpath, limits in windows.items()
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=4, sort_keys=True)


def load_profiles(path: StrPath) -> dict[str, Profile]:
    """Read profiles from a NAB ``config/profiles.json`` (name -> {"CostMatrix": {...}})."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    profiles = {}
    for name, body in raw.items():
        cost = body["CostMatrix"]
        profiles[name] = Profile(
            name,
            tp_weight=float(cost["tpWeight"]),
            fp_weight=float(cost["fpWeight"]),
            fn_weight=float(cost["fnWeight"]),
            tn_weight=float(cost.get("tnWeight", 1.0)),
        )
    return profiles


def _read_csv(path: StrPath, required: Sequence[str]) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(frame.columns)}")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


def load_data(path: StrPath) -> pd.DataFrame:
    """Read a NAB data CSV (``timestamp,value``) with parsed timestamps."""
    return _read_csv(path, ("timestamp", "value"))


def load_scores(path: StrPath) -> pd.DataFrame:
    """Read a detector's output CSV (``timestamp,value,anomaly_score``; extra columns kept)."""
    frame = _read_csv(path, ("timestamp", "anomaly_score"))
    frame["anomaly_score"] = frame["anomaly_score"].astype(float)
    return frame


# --- Per-file preparation (independent of profile and threshold) ----------------------------------


@dataclass(frozen=True, slots=True)
class _FileLayout:
    """Where a file's windows are, and each scorable row's unweighted NAB reward or penalty.

    Arrays cover only the scorable rows (after probation); ``window_of_row`` is -1 outside windows.
    """

    n_windows: int
    n_probation: int
    window_of_row: np.ndarray
    unweighted: np.ndarray  # scaled-sigmoid value: reward inside a window, penalty outside

    def weights(self, profile: Profile) -> np.ndarray:
        """Each row's score if it were the earliest detection (inside) or a detection (outside)."""
        inside = self.window_of_row >= 0
        # Same operation order as NAB: unweighted * tpWeight / maxTP and unweighted * fpWeight.
        return np.where(inside, self.unweighted * profile.tp_weight / _MAX_TP, self.unweighted * profile.fp_weight)


def _as_timestamps(timestamps: Iterable[Any], name: str = "") -> pd.DatetimeIndex:
    if not isinstance(timestamps, (pd.Series, pd.Index, np.ndarray, list, tuple)):
        timestamps = list(timestamps)
    index = pd.DatetimeIndex(pd.to_datetime(timestamps))
    if index.hasnans:
        row = int(np.flatnonzero(index.isna())[0])
        raise ValueError(f"{name or 'timestamps'}: row {row + 1} has no timestamp")
    if not index.is_monotonic_increasing:
        # real machine clocks step back (a clock set back by hand, a time-zone fix): rows keep their
        # order and are labelled by comparison with the window bounds, as NAB's own labeller does
        back = int(np.flatnonzero(np.diff(index.asi8) < 0)[0]) + 1
        warnings.warn(f"{name or 'timestamps'}: row {back + 1} ({index[back]}) is earlier than the row before it "
                      f"({index[back - 1]}); rows are scored in file order", stacklevel=4)
    return index


def _window_rows(
    index: pd.DatetimeIndex, windows: Sequence[tuple[TimestampLike, TimestampLike]], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """First and last row of each window (the first and last row with start <= t <= end, in file
    order, so a clock that steps back inside a file is read as NAB reads it), sorted by start."""
    first, last = [], []
    sorted_rows = index.is_monotonic_increasing
    for start, end in windows:
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if end < start:
            raise ValueError(f"{name}: window ends before it starts: {start} > {end}")
        if sorted_rows:
            lo = int(index.searchsorted(start, side="left"))
            hi = int(index.searchsorted(end, side="right")) - 1
        else:
            inside = np.flatnonzero((index >= start) & (index <= end))
            lo, hi = (int(inside[0]), int(inside[-1])) if len(inside) else (0, -1)
        if hi < lo:
            raise ValueError(f"{name}: window [{start}, {end}] covers no rows of the file")
        first.append(lo)
        last.append(hi)
    order = np.argsort(first, kind="stable")
    first_rows = np.asarray(first, dtype=np.int64)[order]
    last_rows = np.asarray(last, dtype=np.int64)[order]
    if np.any(first_rows[1:] <= last_rows[:-1]):
        raise ValueError(f"{name}: windows overlap; NAB windows must be disjoint")
    return first_rows, last_rows


def _layout(
    timestamps: Iterable[Any],
    windows: Sequence[tuple[TimestampLike, TimestampLike]],
    probationary_percent: float,
    name: str,
) -> tuple[_FileLayout, int]:
    """Compute a file's window membership and per-row unweighted rewards; also returns its length."""
    index = _as_timestamps(timestamps, name)
    n_rows = len(index)
    first_rows, last_rows = _window_rows(index, windows, name)
    n_probation = probationary_length(n_rows, probationary_percent)
    if len(first_rows) and first_rows[0] < n_probation:
        warnings.warn(
            f"{name}: a window starts inside the probationary period (first {n_probation} rows); "
            "NAB's labeller drops such windows, and its perfect score can no longer be reached",
            stacklevel=3,
        )

    rows = np.arange(n_rows)
    window_of_row = np.full(n_rows, -1, dtype=np.int64)
    for k, (lo, hi) in enumerate(zip(first_rows, last_rows, strict=True)):
        window_of_row[lo : hi + 1] = k
    inside = window_of_row >= 0
    widths = (last_rows - first_rows + 1).astype(float)

    position = np.zeros(n_rows)
    # Inside a window: -(right - i + 1) / width, so the first row is -1 and the last is -1/width.
    k_in = window_of_row[inside]
    position[inside] = -(last_rows[k_in] - rows[inside] + 1) / widths[k_in]
    # Outside: distance past the preceding window's end, in (width - 1) units.
    preceding = np.searchsorted(last_rows, rows, side="left") - 1
    outside_after = ~inside & (preceding >= 0)
    k_prev = preceding[outside_after]
    span = widths[k_prev] - 1.0
    distance = (rows[outside_after] - last_rows[k_prev]).astype(float)
    with np.errstate(divide="ignore"):
        # A one-row window has no width to scale by (NAB divides by zero); treat it as far past.
        position[outside_after] = np.where(span > 0, distance / np.where(span > 0, span, 1.0), np.inf)

    unweighted = np.asarray(scaled_sigmoid(position), dtype=float)
    unweighted[~inside & (preceding < 0)] = -1.0  # before any window: full false-positive cost

    layout = _FileLayout(
        n_windows=len(first_rows),
        n_probation=n_probation,
        window_of_row=window_of_row[n_probation:],
        unweighted=unweighted[n_probation:],
    )
    return layout, n_rows


# --- Scoring -------------------------------------------------------------------------------------


def _score_at_threshold(
    scores: np.ndarray, weights: np.ndarray, window_of_row: np.ndarray, fn_weight: float, threshold: float
) -> FileScore:
    """Raw NAB score of scorable rows when rows with ``score >= threshold`` are detections."""
    flagged = scores >= threshold  # NaN scores never fire
    inside = window_of_row >= 0
    false_positive_part = float(weights[flagged & ~inside].sum())
    window_ids, local = np.unique(window_of_row[inside], return_inverse=True)
    best = np.full(len(window_ids), -fn_weight)
    hit = flagged[inside]
    # The earliest detection in a window has the largest reward, so "earliest" == "max".
    np.maximum.at(best, local[hit], weights[inside][hit])
    n_tp = int(np.count_nonzero(flagged & inside))
    n_fp = int(np.count_nonzero(flagged & ~inside))
    return FileScore(
        raw_score=false_positive_part + float(best.sum()),
        tp=n_tp,
        fp=n_fp,
        fn=int(np.count_nonzero(inside)) - n_tp,
        tn=int(np.count_nonzero(~inside)) - n_fp,
    )


def _sweep_rows(scores: np.ndarray, weights: np.ndarray, window_of_row: np.ndarray, fn_weight: float) -> pd.DataFrame:
    """Raw score and counts at every distinct threshold, from "flag nothing" down to the lowest score.

    Rows are sorted by score, highest first; lowering the threshold past a row adds its weight if
    it is outside a window, or raises its window's best reward if it is inside one. Window ids must
    be unique across the corpus. One row per threshold, highest first, as NAB's sweeper returns.
    """
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="stable")  # NaN sorts last and never becomes a threshold
    s, w, win = scores[order], np.asarray(weights, dtype=float)[order], np.asarray(window_of_row)[order]
    inside = win >= 0
    n_windows = len(np.unique(win[inside]))
    n_inside, n_outside = int(inside.sum()), int((~inside).sum())

    change = np.where(inside, 0.0, w)
    if inside.any():
        group = pd.Series(w[inside]).groupby(win[inside])
        best = np.maximum(group.cummax().to_numpy(), -fn_weight)
        previous = pd.Series(best).groupby(win[inside]).shift(1).fillna(-fn_weight).to_numpy()
        change[inside] = best - previous
    raw = -fn_weight * n_windows + np.cumsum(change)

    valid = int(np.count_nonzero(~np.isnan(s)))
    s = s[:valid]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True)) if valid else np.empty(0, dtype=np.int64)
    tp = np.cumsum(inside[:valid])[ends]
    fp = np.cumsum(~inside[:valid])[ends]
    top = s[0] if valid else -np.inf
    nothing = NO_DETECTION_THRESHOLD if top < NO_DETECTION_THRESHOLD else float(np.nextafter(top, np.inf))
    return pd.DataFrame(
        {
            "threshold": np.append(nothing, s[ends]),
            "score": np.append(-fn_weight * n_windows, raw[ends]),
            "tp": np.append(0, tp),
            "fp": np.append(0, fp),
            "fn": np.append(n_inside, n_inside - tp),
            "tn": np.append(n_outside, n_outside - fp),
        }
    )


@dataclass(slots=True)
class _Corpus:
    """Prepared files: layouts plus the scorable part of each file's anomaly scores."""

    layouts: dict[str, _FileLayout]
    scores: dict[str, np.ndarray]

    @property
    def n_windows(self) -> int:
        return sum(layout.n_windows for layout in self.layouts.values())

    @property
    def n_scorable_windows(self) -> int:
        return sum(len(np.unique(layout.window_of_row[layout.window_of_row >= 0])) for layout in self.layouts.values())

    def concatenated(self, profile: Profile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All scorable rows of the corpus, with window ids made unique across files."""
        scores, weights, windows = [], [], []
        offset = 0
        for relpath, layout in self.layouts.items():
            scores.append(self.scores[relpath])
            weights.append(layout.weights(profile))
            windows.append(np.where(layout.window_of_row >= 0, layout.window_of_row + offset, -1))
            offset += layout.n_windows
        if not scores:
            return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
        return np.concatenate(scores), np.concatenate(weights), np.concatenate(windows)


ResultsLike = Mapping[str, tuple[Iterable[Any], Iterable[float]] | pd.DataFrame]


def _prepare(results: ResultsLike, windows: WindowsByFile, probationary_percent: float) -> _Corpus:
    layouts, scores = {}, {}
    for relpath, result in results.items():
        if relpath not in windows:
            raise KeyError(f"no windows for {relpath!r}; list it in the windows file (with [] if it has none)")
        if isinstance(result, pd.DataFrame):
            timestamps, anomaly_scores = result["timestamp"], result["anomaly_score"]
        else:
            timestamps, anomaly_scores = result
        values = np.asarray(anomaly_scores, dtype=float)
        layout, n_rows = _layout(timestamps, windows[relpath], probationary_percent, relpath)
        if len(values) != n_rows:
            raise ValueError(f"{relpath}: {n_rows} timestamps but {len(values)} anomaly scores")
        layouts[relpath] = layout
        scores[relpath] = values[layout.n_probation :]
    return _Corpus(layouts, scores)


def _result(corpus: _Corpus, profile: Profile, threshold: float | None) -> NabResult:
    if threshold is None:
        curve = _sweep_rows(*corpus.concatenated(profile), fn_weight=profile.fn_weight)
        # First maximum = highest threshold among ties, as NAB's stable sort by score picks.
        threshold = float(curve["threshold"].iloc[int(np.argmax(curve["score"].to_numpy()))])
    files = {
        relpath: _score_at_threshold(
            corpus.scores[relpath], layout.weights(profile), layout.window_of_row, profile.fn_weight, threshold
        )
        for relpath, layout in corpus.layouts.items()
    }
    raw = sum(f.raw_score for f in files.values())
    null = -profile.fn_weight * corpus.n_scorable_windows
    perfect = profile.tp_weight * corpus.n_windows
    normalised = 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan
    return NabResult(
        profile=profile.name,
        score=normalised,
        raw_score=raw,
        threshold=threshold,
        tp=sum(f.tp for f in files.values()),
        fp=sum(f.fp for f in files.values()),
        fn=sum(f.fn for f in files.values()),
        tn=sum(f.tn for f in files.values()),
        null_score=null,
        perfect_score=perfect,
        files=files,
    )


def score_corpus(
    results: ResultsLike,
    windows: WindowsByFile,
    profiles: Iterable[str | Profile] = DEFAULT_PROFILES,
    *,
    thresholds: Mapping[str, float] | None = None,
    probationary_percent: float = PROBATIONARY_PERCENT,
) -> dict[str, NabResult]:
    """Score a detector over several files, one threshold per profile, as NAB's leaderboard does.

    Parameters
    ----------
    results
        Relative CSV path -> ``(timestamps, anomaly_scores)`` or a frame with ``timestamp`` and
        ``anomaly_score`` columns. Every path must appear in ``windows``; files listed in
        ``windows`` but absent here are not scored.
    windows
        Relative CSV path -> ``[(start, end), ...]``; a window covers rows with start <= t <= end.
    profiles
        Profile names (see ``PROFILES``) or ``Profile`` objects.
    thresholds
        Fixed threshold per profile name (e.g. from NAB's ``config/thresholds.json``); profiles not
        listed get the threshold that maximises their corpus score.
    probationary_percent
        Share of each file ignored at its start.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.date_range("2024-01-01", periods=100, freq="h")
    >>> late = [1.0 if i == 69 else 0.0 for i in range(100)]  # last row of the window
    >>> result = score_corpus({"a.csv": (t, late)}, {"a.csv": [(t[60], t[69])]}, ["standard"])
    >>> round(result["standard"].score, 3)  # found on the window's last row: worth 0.248 of a TP
    62.412
    """
    corpus = _prepare(results, windows, probationary_percent)
    fixed = thresholds or {}
    return {
        p.name: _result(corpus, p, fixed.get(p.name))
        for p in (_resolve_profile(profile) for profile in profiles)
    }


def score_file(
    timestamps: Iterable[Any],
    scores: Iterable[float],
    windows: Sequence[tuple[TimestampLike, TimestampLike]],
    profile: str | Profile = "standard",
    *,
    threshold: float | None = None,
    probationary_percent: float = PROBATIONARY_PERCENT,
) -> NabResult:
    """Score one file under one profile; the threshold is swept over this file alone unless given.

    The normalised score is NaN when the file has no windows (perfect and null coincide).
    """
    resolved = _resolve_profile(profile)
    results = {"file": (timestamps, scores)}
    thresholds = {resolved.name: threshold} if threshold is not None else None
    corpus = score_corpus(
        results, {"file": windows}, [resolved], thresholds=thresholds, probationary_percent=probationary_percent
    )
    return corpus[resolved.name]


def threshold_curve(
    results: ResultsLike,
    windows: WindowsByFile,
    profile: str | Profile = "standard",
    *,
    probationary_percent: float = PROBATIONARY_PERCENT,
) -> pd.DataFrame:
    """Raw corpus score and row counts at every distinct threshold (highest first).

    The first row is "flag nothing" (threshold 1.1 for scores in [0, 1]). Useful to see how
    sensitive a detector is to its threshold; ``score_corpus`` picks this table's maximum.
    """
    resolved = _resolve_profile(profile)
    corpus = _prepare(results, windows, probationary_percent)
    return _sweep_rows(*corpus.concatenated(resolved), fn_weight=resolved.fn_weight)


def _scores_path(scores_dir: Path, relpath: str, detector: str | None) -> Path:
    if detector is None:
        return scores_dir / relpath
    rel = Path(relpath)
    return scores_dir / rel.parent / f"{detector}_{rel.name}"


def score_directory(
    scores_dir: StrPath,
    windows_path: StrPath,
    profiles: Iterable[str | Profile] = DEFAULT_PROFILES,
    *,
    detector: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    probationary_percent: float = PROBATIONARY_PERCENT,
) -> dict[str, NabResult]:
    """Score a directory of detector outputs (``timestamp,value,anomaly_score`` CSVs).

    Every file named in the windows file must have a scores CSV: at the same relative path under
    ``scores_dir``, or, with ``detector="name"``, in NAB's results layout
    ``<category>/<name>_<file>.csv`` (as in NAB's ``results/<name>/`` directories).
    """
    base = Path(scores_dir)
    windows = load_windows(windows_path)
    paths = {relpath: _scores_path(base, relpath, detector) for relpath in windows}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"no scores for {len(missing)} labelled file(s): {shown}")
    results = {relpath: load_scores(path) for relpath, path in paths.items()}
    return score_corpus(
        results, windows, profiles, thresholds=thresholds, probationary_percent=probationary_percent
    )
