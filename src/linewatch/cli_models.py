"""``linewatch models``: the versions of a machine's normal, from the alert database.

``list`` and ``show`` read what the workers recorded; ``activate`` puts an earlier version back in
use (a rollback) with who and why, journalled like an action through the API, so the worker that
owns the machine swaps its model at its next batch. The same checks as the API refuse a version of
another model kind, one that watched other sensors than the profile maps now, or one whose state
retention dropped. ``export`` writes one version as a file (``linewatch.detect.export``); ``import``
makes such a file, from this plant or another, the machine's next version and puts it in use.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable


def add_parser(sub: Any, settings: Callable[[argparse.Namespace], Any], config: Callable[[Path | None], Any]) -> None:
    """The ``models`` command and its ``list``, ``show`` and ``activate``."""
    m = sub.add_parser("models", help="versions of a machine's normal in the alert database: list, show, activate")
    ms = m.add_subparsers(dest="models_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("machine")
    common.add_argument("--recipe", help="the recipe's versions (default: readings that name none)")
    common.add_argument("--config-dir", type=Path)
    ls = ms.add_parser("list", parents=[common], help="every version, newest first, and which is live")
    ls.add_argument("--json", action="store_true")
    sh = ms.add_parser("show", parents=[common], help="one version's normal bands beside the live one's")
    sh.add_argument("version", type=int)
    sh.add_argument("--json", action="store_true")
    ac = ms.add_parser("activate", parents=[common], help="put an earlier version back in use (a rollback)")
    ac.add_argument("version", type=int)
    ac.add_argument("--by", required=True, help="who does it")
    ac.add_argument("--why", required=True, help="why (journalled with the action)")
    ex = ms.add_parser("export", parents=[common], help="one version, with its state, as a file")
    ex.add_argument("version", type=int)
    ex.add_argument("--out", type=Path, required=True, help="the file to write")
    im = ms.add_parser("import", parents=[common], help="a version from an export file becomes this machine's next "
                                                        "version and is put in use")
    im.add_argument("file", type=Path)
    im.add_argument("--by", required=True, help="who does it")
    im.add_argument("--why", required=True, help="why (journalled with the action)")
    for parser, run in ((ls, _list), (sh, _show), (ac, _activate), (ex, _export), (im, _import)):
        parser.set_defaults(func=lambda args, run=run: _with_store(args, run, settings, config))


def _with_store(args: argparse.Namespace, run: Callable[..., int], settings: Callable, config: Callable) -> int:
    from linewatch.alerts.store import AlertStore

    s = settings(args)
    plant = config(s.config_dir)
    if plant is None:
        return 2
    if args.machine not in plant.machines:
        print(f"linewatch models: no machine {args.machine!r} in {plant.directory} "
              f"(machines: {', '.join(sorted(plant.machines))})", file=sys.stderr)
        return 2
    store = AlertStore(s.database_url)
    try:
        return run(args, store, plant)
    finally:
        store.close()


def _list(args: argparse.Namespace, store: Any, plant: Any) -> int:
    versions = store.model_versions(args.machine, args.recipe)
    if args.json:
        print(json.dumps({"machine": args.machine, "recipe": args.recipe,
                          "versions": [v.to_dict() for v in versions]}, indent=2))
        return 0
    if not versions:
        print(f"{args.machine}: no model version recorded yet (its model has not finished learning)")
        return 0
    print(f"{args.machine}{f' ({args.recipe})' if args.recipe else ''}: {len(versions)} version(s)")
    print(f"  {'ver':>4}  {'status':<10}  {'reason':<19}  {'by':<14}  {'learned from':<20}  {'until':<20}  "
          f"{'readings':>8}  state")
    for v in versions:
        print(f"  {v.version:>4}  {v.status:<10}  {v.reason:<19}  {(v.made_by or '-'):<14}  "
              f"{_when(v.learned_from):<20}  {_when(v.made_at):<20}  {v.readings:>8}  "
              f"{'kept' if v.state_kept else 'dropped'}")
    return 0


def _show(args: argparse.Namespace, store: Any, plant: Any) -> int:
    versions = store.model_versions(args.machine, args.recipe)
    found = next((v for v in versions if v.version == args.version), None)
    if found is None:
        print(f"linewatch models: {args.machine} has no version {args.version}", file=sys.stderr)
        return 1
    live = next((v for v in versions if v.status == "active"), None)
    if args.json:
        print(json.dumps({"version": found.to_dict(), "live": None if live is None else live.to_dict()}, indent=2))
        return 0
    print(f"{args.machine} version {found.version} ({found.status}): {found.reason.replace('_', ' ')}"
          f"{f' by {found.made_by}' if found.made_by else ''}{f' — {found.note}' if found.note else ''}")
    print(f"  learned from {found.readings} readings, {_when(found.learned_from)} to {_when(found.made_at)}; "
          f"{found.kind}, threshold {found.threshold}, calibration {found.calibration}")
    theirs = live.normal_ranges if live is not None else {}
    print(f"  {'sensor':<24}  {'this version':<22}  live (v{live.version if live else '-'})")
    for sensor in sorted(set(found.normal_ranges) | set(theirs)):
        print(f"  {sensor:<24}  {_band(found.normal_ranges.get(sensor)):<22}  {_band(theirs.get(sensor))}")
    return 0


def _activate(args: argparse.Namespace, store: Any, plant: Any) -> int:
    from linewatch.alerts.store import AlertNotFound, VersionConflict
    from linewatch.pipeline import watched_sensors

    try:
        v = store.activate_version(args.machine, args.recipe, args.version, by=args.by, note=args.why,
                                   at=datetime.now(timezone.utc), kind=plant.detection.anomaly.model,
                                   sensors=watched_sensors(plant, args.machine))
    except AlertNotFound:
        print(f"linewatch models: {args.machine} has no version {args.version}", file=sys.stderr)
        return 1
    except VersionConflict as exc:
        print(f"linewatch models: not activated: {exc}", file=sys.stderr)
        return 1
    print(f"{args.machine} version {v.version} is in use again; the worker that owns {args.machine} "
          "swaps its model at its next batch")
    return 0


def _export(args: argparse.Namespace, store: Any, plant: Any) -> int:
    from linewatch.detect.export import ExportError, export_version

    version = store.model_version(args.machine, args.version, args.recipe, with_state=True)
    if version is None:
        print(f"linewatch models: {args.machine} has no version {args.version}", file=sys.stderr)
        return 1
    try:
        data = export_version(version)
    except ExportError as exc:
        print(f"linewatch models: not exported: {exc}", file=sys.stderr)
        return 1
    args.out.write_bytes(data)
    print(f"{args.machine} version {version.version} written to {args.out} ({len(data):,} bytes)")
    return 0


def _import(args: argparse.Namespace, store: Any, plant: Any) -> int:
    import pickle

    from linewatch.alerts.store import VersionConflict
    from linewatch.detect.export import ExportError, read_export
    from linewatch.detect.versions import IMPORTED, ModelVersion
    from linewatch.pipeline import watched_sensors

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"linewatch models: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        record, model = read_export(data, str(args.file))
    except ExportError as exc:
        print(f"linewatch models: not imported: {exc}", file=sys.stderr)
        return 1
    model.machine = args.machine  # the machine it is imported to
    source = f"{record.get('machine')} version {record.get('version')}"
    note = f"{args.why} (imported from {source}, {args.file.name})"
    when = lambda key: None if not record.get(key) else datetime.fromisoformat(record[key].replace("Z", "+00:00"))  # noqa: E731
    version = ModelVersion(
        id="", machine=args.machine, line=plant.machines[args.machine].line, recipe=args.recipe,
        version=0, kind=str(record.get("kind")), settings=record.get("settings") or {}, reason=IMPORTED,
        made_at=when("made_at") or datetime.now(timezone.utc), readings=int(record.get("readings") or 0),
        learned_from=when("learned_from"), threshold=record.get("threshold"),
        normal_ranges=record.get("normal_ranges") or {}, calibration=record.get("calibration"),
        gate=record.get("gate"), state=pickle.dumps(model, protocol=5))
    try:
        stored = store.import_version(version, by=args.by, note=note,
                                      at=datetime.now(timezone.utc), kind=plant.detection.anomaly.model,
                                      sensors=watched_sensors(plant, args.machine))
    except VersionConflict as exc:
        print(f"linewatch models: not imported: {exc}", file=sys.stderr)
        return 1
    print(f"{args.machine} version {stored.version} imported from {source} and put in use; the worker that owns "
          f"{args.machine} swaps its model at its next batch")
    return 0


def _when(ts: datetime | None) -> str:
    return "-" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


def _band(band: list[float] | None) -> str:
    return "-" if band is None else f"{band[0]:g} – {band[1]:g}"
