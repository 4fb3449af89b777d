"""Every process a test starts belongs to the test and ends with it, whatever the outcome.

``ChildProcesses`` (the ``processes`` fixture) starts each child in a session of its own, so ending
it ends whatever it started too; at the test's end any still running gets SIGTERM, then SIGKILL.
Beyond that, every process started during the test session carries ``PYTEST_LINEWATCH_SESSION`` in
its environment, so at the end of the session ``leftovers()`` finds any that escaped (a daemon a
script forked off, a child re-parented to init) and the session fails naming them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

MARKER = "PYTEST_LINEWATCH_SESSION"  # not LINEWATCH_*: tests drop those from workers' environments
GRACE_SECONDS = 10.0


def mark_session() -> str:
    """Put this session's marker in the environment every child inherits."""
    return os.environ.setdefault(MARKER, uuid.uuid4().hex)


class ChildProcesses:
    """The processes one test started."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, argv: list[str], **popen_kwargs) -> subprocess.Popen:
        """``subprocess.Popen`` in a process group of its own, owned by this test."""
        proc = subprocess.Popen(argv, start_new_session=True, **popen_kwargs)
        self.started.append(proc)
        return proc

    def run(self, argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
        """Run to completion within ``timeout`` seconds (its whole group is killed past that)."""
        proc = self.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.end(proc, signal.SIGKILL)
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def end(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = GRACE_SECONDS) -> int:
        """Send ``sig`` to the process's group; SIGKILL the group if it has not exited after ``grace``."""
        if proc.poll() is None:
            _signal_group(proc.pid, sig)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(grace)
        _signal_group(proc.pid, signal.SIGKILL)  # anything the child left behind in its group
        return proc.returncode

    def close(self) -> list[str]:
        """End every child still running; returns a line for each one that had to be ended."""
        left = []
        for proc in self.started:
            if proc.poll() is None:
                left.append(f"pid {proc.pid}: {' '.join(map(str, proc.args))[:200]}")
            self.end(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        self.started.clear()
        return left


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def leftovers(marker: str) -> dict[int, str]:
    """Processes other than this one (and its ancestors) that carry this session's marker: pid -> command line."""
    mine = {os.getpid()}
    pid = os.getppid()
    while pid > 1:  # pytest may run under a wrapper that started it with the marker already set
        mine.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found = {}
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        except OSError:  # gone meanwhile, or a zombie
            continue
    return found


def end_leftovers(found: dict[int, str], grace: float = 5.0) -> None:
    for pid in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in found):
        time.sleep(0.1)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
