"""The panel's finished-run views over records on disk: history order, trends with the drift rule,
run lookup that cannot leave the runs folder, and forms checked field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

import procedures
from reports.synthetic import write_record
from rig.analysis.trends import INSUFFICIENT
from rig.service import finished
from rig.service.forms import check_form, form_schema


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for i, outcome in enumerate(("PASS", "FAIL", "PASS", "INCOMPLETE")):
        path = write_record(runs / f"2026011{i}T090000Z-flow_accuracy-00000{i}", outcome, seed=i + 1,
                            duration_s=300.0)
        (path / "record.jsonl").touch()
        import os
        os.utime(path / "record.jsonl", (1_700_000_000 + i, 1_700_000_000 + i))
    return runs


def test_history_lists_newest_first_with_outcomes(runs: Path) -> None:
    listed = finished.list_runs(runs)
    assert [r.run_id[-1] for r in listed] == ["3", "2", "1", "0"]
    assert [r.outcome for r in listed] == ["INCOMPLETE", "PASS", "FAIL", "PASS"]
    assert listed[0].procedure == "flow_accuracy" and listed[0].operator == "Jane Doe"  # the recorded operator identity


def test_trends_take_finished_runs_oldest_first_and_assess_them(runs: Path) -> None:
    trends = {t["measurement"]: t for t in finished.trends(runs)}
    mean = trends["flow.mean_error_pct"]
    assert mean["runs"] == [p.name for p in sorted(runs.iterdir())][:3]  # the INCOMPLETE run is not a point
    assert len(mean["values"]) == 3 and (mean["low"], mean["high"]) == (-5.0, 5.0)
    assert mean["status"] == INSUFFICIENT  # three runs are too few for the drift rule
    assert finished.trends(runs, procedure="delivery_check") == []


@pytest.mark.parametrize("bad", ["", "../runs", "..", ".hidden", "a/b", "nope"])
def test_run_lookup_never_leaves_the_runs_folder(runs: Path, bad: str) -> None:
    with pytest.raises(KeyError):
        finished.find_run(runs, bad)


def test_form_checks_every_field_and_then_the_cross_rules() -> None:
    procedure = procedures.load("delivery_check")
    schema = form_schema(procedure)
    assert [p["name"] for p in schema["parameters"]] == [p.name for p in procedure.parameters]
    assert schema["item_under_test"][0]["id"] == "item_serial"
    assert [s["id"] for s in schema["operator_steps"]] == ["setup"]
    check = check_form(procedure, {"rate_ml_h": "12", "duration_min": "1.5min", "item_serial": "",
                                   "colour": "red"})
    assert set(check.errors) == {"rate_ml_h", "item_serial", "colour"}
    assert "0.05 to 10 mL/h" in check.errors["rate_ml_h"] and check.form_error is None
    check = check_form(procedure, {"rate_ml_h": "0.05", "duration_min": "1", "item_serial": "SN1"})
    assert check.errors == {} and "raise the rate or the duration" in (check.form_error or "")
    check = check_form(procedure, {"rate_ml_h": "1", "duration_min": "", "item_serial": "SN1"})
    assert check.ok and check.param_items == ["rate_ml_h=1"] and check.answers == {"item_serial": "SN1"}
