"""Running the real `rig` command in tests, and the rule that it never prints a traceback.

Why shared: a traceback on a user's terminal is a defect whatever the exit code (a user mistake
gets one clear message; a bug in a background thread gets recorded, not printed). Every test that
starts `rig` as a subprocess goes through ``run_rig``/``assert_no_traceback``, so a stray
traceback fails the suite instead of scrolling by in a log nobody reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback"
KEEP_ENV = ("RIG_LOCK_DIR",)  # the per-test station lock directory (conftest) always goes along


def assert_no_traceback(*outputs: str | bytes | None, what: str = "rig") -> None:
    """Fail when any of a process's outputs (stdout, stderr, a log file's text) holds a traceback."""
    for text in outputs:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if text and TRACEBACK in text:
            at = text.index(TRACEBACK)
            raise AssertionError(f"{what} printed a traceback:\n{text[max(0, at - 400):at + 3000]}")


def rig_env(extra: Mapping[str, str] | None = None, *, clean_rig_vars: bool = False) -> dict[str, str]:
    """The environment of a `rig` child: this checkout on PYTHONPATH, no $RIG_STATION; with
    ``clean_rig_vars`` no other $RIG_* either (but always the per-test lock directory)."""
    env = dict(os.environ)
    if clean_rig_vars:
        env = {k: v for k, v in env.items() if not k.startswith("RIG_") or k in KEEP_ENV}
    env.pop("RIG_STATION", None)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def run_rig(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 120,
            clean_rig_vars: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m rig ARGS` to completion (stdin not a terminal); fails the test on a traceback."""
    proc = subprocess.run([sys.executable, "-m", "rig", *args], capture_output=True, text=True, timeout=timeout,
                          env=rig_env(env, clean_rig_vars=clean_rig_vars), cwd=cwd or REPO,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)
    assert_no_traceback(proc.stdout, proc.stderr, what=f"rig {' '.join(args[:2])}")
    return proc


def start_rig(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
              **popen: object) -> subprocess.Popen[str]:
    """`python -m rig ARGS` in the background (pipes for stdout/stderr unless given); the caller
    checks its output with ``assert_no_traceback`` after ``communicate()``."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-m", "rig", *args], text=True, env=rig_env(env),
                            cwd=cwd or REPO, **popen)  # type: ignore[call-overload]


def wait_for_step(out: Path, step: str, proc: subprocess.Popen[str], timeout_s: float = 60) -> Path:
    """The run directory under ``out`` once its record shows ``step`` started (``proc`` must stay
    alive meanwhile): the moment to signal or race a run mid-step."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {proc.communicate()}")
        for record in out.glob("*/record.jsonl"):
            text = record.read_text()
            if '"type": "step_started"' in text and f'"step": "{step}"' in text:
                return record.parent
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"step {step} did not start within {timeout_s} s: {proc.communicate()}")
