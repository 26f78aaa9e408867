"""Suite files: validation with one message per problem, and the shipped suite covers every procedure."""

from __future__ import annotations

from pathlib import Path

import pytest

import procedures
from rig.errors import ConfigError
from rig.fleet.suite import load_suite

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "suites" / "nightly.toml"

GOOD = """
[suite]
name = "nightly"
budget_min = 20

[[run]]
procedure = "delivery_check"
params = { duration_min = 6, rate_ml_h = 1.0, settle_s = 5 }
answers = { item_serial = "SN-1", setup = "done" }

[[run]]
procedure = "delivery_check"
label = "delivery_check_slow"
params = { duration_min = 120, rate_ml_h = 0.05 }
answers = { item_serial = "SN-1", setup = "yes" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_suite(write(tmp_path, text))
    return info.value.problems


def test_a_valid_suite_loads_with_defaults_and_values(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, GOOD))
    assert (suite.name, suite.budget_s, suite.operator) == ("nightly", 1200.0, None)  # checked at the station
    first, second = suite.entries
    assert (first.label, second.label) == ("delivery_check", "delivery_check_slow")
    assert first.params.values["duration_min"] == 6.0 and first.params.values["sample_interval_s"] == 30.0
    assert second.params.values["rate_ml_h"] == 0.05
    assert first.answers == {"item_serial": "SN-1", "setup": "done"}
    assert first.spec.limit("volume_error_pct").high == 5.0


def test_a_missing_operator_answer_names_the_step(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace('item_serial = "SN-1", setup = "done"', 'item_serial = "SN-1"', 1))
    assert found == [
        "run[0] (delivery_check).answers.setup: operator step \"setup\" (instruction: \"Prime the line and place "
        "the catheter outlet in the weighing vessel on the balance; close the draft shield.\") has no answer; an "
        "unattended run cannot ask, so add it to this run's answers"]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = """
[suite]
name = "night ly"
budget_min = 0
budgt = 3

[[run]]
procedure = "delivery_chek"

[[run]]
procedure = "delivery_check"
params = { rate_ml_h = 50, duration = 3 }
answers = { item_serial = "SN-1", setup = "done" }

[[run]]
procedure = "delivery_check"
params = { duration_min = 6 }
answers = { item_serial = "bad serial!", setup = "done", colour = "red" }

[[run]]
procedure = "delivery_check"
params = { duration_min = 6 }
answers = { item_serial = "SN-1", setup = "done" }

[[run]]
procedure = "delivery_check"
params = { duration_min = 6 }
answers = { item_serial = "SN-1", setup = "done" }
"""
    found = "\n".join(problems(tmp_path, text))
    assert 'suite.budgt: unknown key (value 3) (did you mean "budget_min"?)' in found
    assert 'suite.name: "night ly" is not a valid suite name' in found
    assert "suite.budget_min: 0 is out of range; expected a number in 0.05..10080 min" in found
    assert "run[0] (delivery_chek).procedure: unknown procedure 'delivery_chek' (did you mean delivery_check?)" in found
    assert "run[1] (delivery_check).params: parameter rate_ml_h: 50 is out of range" in found
    assert "run[2] (delivery_check).answers.colour: procedure delivery_check has no operator step \"colour\"" in found
    assert "run[2] (delivery_check).answers.item_serial: invalid answer" in found
    assert 'run[4]: label "delivery_check" is already used by run[3]' in found


def test_out_of_range_parameter_says_what_is_allowed(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("rate_ml_h = 1.0", "rate_ml_h = 50.0", 1))
    assert found == ["run[0] (delivery_check).params: parameter rate_ml_h: 50.0 is out of range; "
                     "allowed: a number from 0.05 to 10 mL/h"]


def test_runs_must_be_an_array_of_tables(tmp_path: Path) -> None:
    found = problems(tmp_path, '[suite]\nname = "n"\nbudget_min = 5\n[run]\nprocedure = "delivery_check"\n')
    assert found == ["run: must be an array of tables, written [[run]] (one per procedure run)"]
    found = problems(tmp_path, '[suite]\nname = "n"\nbudget_min = 5\n')
    assert found == ["run: no [[run]] entries; a suite runs at least one procedure"]


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_suite(tmp_path / "none.toml")
    assert "invalid TOML syntax" in problems(tmp_path, "[suite\n")[0]


def test_shipped_suite_is_valid_and_covers_every_procedure() -> None:
    """A procedure added to procedures/ must also be added to the nightly suite."""
    suite = load_suite(SHIPPED)
    found = procedures.discover()
    assert not found.broken, found.broken
    missing = sorted(set(found.procedures) - suite.procedure_ids())
    assert not missing, f"suites/nightly.toml does not run: {', '.join(missing)}"
    assert suite.budget_s <= 60 * 60  # minutes on the simulated bench
