"""The commands a person types, run as a person runs them: in a subprocess."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def linewatch(*args: str, stdin: bytes | None = None, timeout: float = 120, cwd: Path = ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "linewatch.cli", *args], input=stdin, capture_output=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def test_simulate_then_normalize_keeps_every_message():
    sim = linewatch("simulate", "--to", "stdout", "--seconds", "60", "--start", "2026-01-05T06:00:00Z")
    assert sim.returncode == 0, sim.stderr
    lines = sim.stdout.splitlines()
    assert len(lines) == 60 * 5  # four machines and one QC verdict per second
    first = json.loads(lines[0])
    assert set(first) == {"topic", "key", "value"} and json.loads(first["value"])  # exact payload bytes
    poisoned = sim.stdout + b'{"topic": "linewatch.raw.extruder-1", "key": "extruder-1", "value": "{oops"}\n' + b"not json\n"
    norm = linewatch("normalize", stdin=poisoned)
    assert norm.returncode == 0, norm.stderr
    out = [json.loads(x) for x in norm.stdout.splitlines()]
    assert len(out) == len(lines) + 2  # input count equals output count, always
    assert sum("reading" in o for o in out) == 240 and sum("qc" in o for o in out) == 60
    assert out[-2]["rejected"]["reason"] == "not_json" and out[-1]["rejected"]["reason"] == "bad_envelope"


def test_check_config_names_file_and_line(tmp_path):
    ok = linewatch("check-config")
    assert ok.returncode == 0 and b"4 machine(s)" in ok.stdout
    (tmp_path / "plant.yaml").write_text("site: x\nareas:\n  - name: a\n    linez: []\n")
    bad = linewatch("check-config", "--config-dir", str(tmp_path))
    assert bad.returncode == 2
    err = bad.stderr.decode()
    assert f"{tmp_path / 'plant.yaml'}:4: areas.0.linez: unknown setting" in err
    assert "catalogue.yaml: file not found" in err


def test_demo_shows_both_alert_kinds_and_a_summary(tmp_path):
    """The README's first command: a newcomer sees an anomaly and a failure-rate alert early."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEWATCH_")}  # embedded defaults only
    run = subprocess.run([sys.executable, "-m", "linewatch.cli", "demo", "--duration", "25", "--port", "0",
                          "--speed", "120"], capture_output=True, timeout=120, cwd=tmp_path, env=env)
    out = run.stdout.decode()
    assert run.returncode == 0, run.stderr.decode()
    assert re.search(r"FIRED\s+\w+\s+anomaly\s+extruder-1: die pressure", out), out
    assert re.search(r"FIRED\s+\w+\s+failure_rate\s+Failure rate", out), out
    summary = re.search(r"summary: .* (\d+) readings processed, (\d+) QC results, (\d+) rejected", out)
    assert summary and int(summary.group(1)) > 5000 and summary.group(3) == "0", out
    assert re.search(r"API token for changes \(ack, resolve, silence\): \S{20,}", out), out
    assert (tmp_path / "var" / "demo.db").exists()
    # the demo's operator judged the die-pressure alert against the fault the simulator injected
    from linewatch.alerts.store import AlertStore
    from linewatch.domain import AlertKind, AlertStatus, AlertVerdict

    store = AlertStore(f"sqlite:///{tmp_path / 'var' / 'demo.db'}")
    try:
        die = [a for a in store.query(machine="extruder-1", kind=[AlertKind.ANOMALY.value], limit=1000)
               if a.status is AlertStatus.RESOLVED]
        first = min(die, key=lambda a: a.started_at)
        assert first.verdict is AlertVerdict.TRUE_ALARM and first.verdict_by == "demo-operator", first
        assert "die_pressure +30" in first.verdict_note
    finally:
        store.close()


def test_ctrl_c_stops_the_demo_cleanly(tmp_path):
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEWATCH_")}
    proc = subprocess.Popen([sys.executable, "-m", "linewatch.cli", "demo", "--port", "0", "--speed", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 60
        seen = b""
        while b"FIRED" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert b"FIRED" in seen, seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"summary:" in out and b"Traceback" not in err


def test_worker_refuses_to_start_on_an_invalid_config(tmp_path):
    import shutil

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    profile = tmp_path / "configs" / "manufacturers" / "extrutec.yaml"
    profile.write_text(profile.read_text().replace("unit: psi}", "unit: degC}"))
    run = linewatch("run", "--config-dir", str(tmp_path / "configs"), env={"LINEWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    err = run.stderr.decode()
    assert run.returncode == 2
    assert f"{profile}:" in err and "cannot convert degC" in err and "bar" in err
