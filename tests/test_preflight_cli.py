"""Preflight in one go: everything wrong with a `rig run` request is said at once, before the bench
is touched (exit 2); `rig list` shows each procedure's operator steps and cross-parameter rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import procedures
from tests.cli import run_rig


def test_unattended_run_lists_every_missing_answer_at_once(tmp_path: Path, station_file: Any) -> None:
    proc = run_rig("run", "delivery_check", "--station", str(station_file()), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert ("2 operator steps need answers, and this run is unattended (stdin is not a terminal): "
            "'item_serial' ('Serial number of the pump under test'); 'setup' (") in proc.stderr
    assert "give --answer item_serial=... --answer setup=... or an answers file" in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_every_preflight_problem_in_one_message(tmp_path: Path, station_file: Any) -> None:
    proc = run_rig("run", "delivery_check", "--station", str(station_file()), "--out", "/proc/x",
                   "--param", "rate_ml_h=0.1", "--param", "duration_min=1", "--answer", "colour=blue")
    assert proc.returncode == 2
    err = proc.stderr
    assert "rig run delivery_check refused before starting (4 problems):" in err
    assert "rate_ml_h × duration_min gives 0.00167 mL" in err
    assert "answer given for 'colour', but procedure delivery_check has no operator step of that name" in err
    assert "2 operator steps need answers" in err
    assert "--out /proc/x is not writable: " in err
    assert proc.stdout == ""  # no run started, no record path printed


def test_unwritable_out_is_exit_2_before_anything_starts(station_file: Any) -> None:
    proc = run_rig("run", "delivery_check", "--station", str(station_file()), "--out", "/proc/x",
                   "--answer", "item_serial=SN1", "--answer", "setup=done")
    assert proc.returncode == 2
    assert proc.stderr.startswith("rig: error: --out /proc/x is not writable: ")
    assert "record:" not in proc.stdout and proc.stdout == ""


def test_rig_list_shows_operator_steps_and_rules() -> None:
    overview = run_rig("list")
    assert overview.returncode == 0
    assert "operator steps" in overview.stdout and "rules" in overview.stdout
    one = run_rig("list", "delivery_check")
    assert one.returncode == 0
    assert "  - rate_ml_h × duration_min / 60 ≥ 0.1 mL" in one.stdout
    assert "  item_serial [entry]: Serial number of the pump under test" in one.stdout
    assert "unattended: rig run delivery_check --answer item_serial=... --answer setup=..." in one.stdout
    described = json.loads(run_rig("list", "kink", "--json").stdout)
    assert described["rules"] == ["rate_ml_h × hold_min / 60 ≥ 0.01 mL per hold: the flow error needs "
                                  "100 balance digits."]
    assert [s["id"] for s in described["operator_steps"]] == ["item_serial", "setup"]
    unknown = run_rig("list", "nope")
    assert unknown.returncode == 2 and "unknown procedure 'nope'" in unknown.stderr


def test_every_shipped_rule_is_described() -> None:
    found = procedures.discover()
    assert not found.broken
    for procedure in found.procedures.values():
        assert len(procedure.rules()) == len(procedure.checks)
        for rule in procedure.rules():
            assert "(not described)" not in rule, (procedure.id, rule)
