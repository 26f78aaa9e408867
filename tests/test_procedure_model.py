"""Procedure model, parameters, spec files, discovery and operator answers — no bench needed."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

import procedures
from rig.engine.operator import (
    Confirm,
    Entry,
    Instruction,
    Operator,
    load_answers_file,
    parse_answer_args,
)
from rig.engine.params import parse_params
from rig.engine.procedure import Measurement, Parameter, Procedure, Step
from rig.engine.spec import Limit, load_spec
from rig.errors import ConfigError, UsageError


def _noop(ctx: object) -> None:
    pass


def make_procedure(**overrides: object) -> Procedure:
    fields: dict[str, object] = dict(
        id="demo", version="1.0", title="Demo", requirements=("REQ-1",),
        parameters=(Parameter("rate_ml_h", "mL/h", 1.0, low=0.05, high=10.0),
                    Parameter("repeats", "", 3, low=1, high=10, integer=True)),
        steps=(Step("only", _noop),),
        measurements=(Measurement("error_pct", "%"),),
        spec_file="demo.spec.toml",
    )
    fields.update(overrides)
    return Procedure(**fields)  # type: ignore[arg-type]


# -- parameters ---------------------------------------------------------------------------------


def test_params_defaults_and_given_values_with_optional_unit_suffix() -> None:
    proc = make_procedure()
    values = parse_params(["rate_ml_h=0.5mL/h", "repeats=4"], proc)
    assert values.values == {"rate_ml_h": 0.5, "repeats": 4}
    assert isinstance(values.values["repeats"], int)
    assert parse_params(["rate_ml_h = 2 ml/h"], proc).values["rate_ml_h"] == 2.0
    record = parse_params(["repeats=2"], proc).for_record(proc)
    assert record["rate_ml_h"] == {"value": 1.0, "unit": "mL/h", "source": "default"}
    assert record["repeats"]["source"] == "command line"


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("rate_ml_h=-1", "parameter rate_ml_h: -1 is out of range; allowed: a number from 0.05 to 10 mL/h"),
        ("rate_ml_h=11", "parameter rate_ml_h: 11 is out of range; allowed: a number from 0.05 to 10 mL/h"),
        ("rate_ml_h=abc", "parameter rate_ml_h: 'abc' is not a number; allowed: a number from 0.05 to 10 mL/h"),
        ("rate_ml_h=nan", "parameter rate_ml_h: 'nan' is not a number"),
        ("rate_ml_h=inf", "parameter rate_ml_h: 'inf' is not a number"),
        ("rate_ml_h=1e999", "parameter rate_ml_h: 1e999 is not a finite number"),
        ("rate_ml_h=", "parameter rate_ml_h: '' is not a number"),
        ("rate_ml_h=0.5mL/min", "parameter rate_ml_h: unit 'mL/min' is not accepted; give the value in mL/h"),
        ("repeats=2.5", "parameter repeats: 2.5 is not an integer; allowed: an integer from 1 to 10"),
        ("repeats=2x", "parameter repeats: unit 'x' is not accepted; give the value without a unit"),
        ("rate=1", "unknown parameter 'rate' for procedure demo (did you mean rate_ml_h?); its parameters: rate_ml_h [mL/h], repeats"),
        ("rate_ml_h", "--param 'rate_ml_h': expected NAME=VALUE"),
        ("rate_ml_h=1,5", "parameter rate_ml_h: '1,5' uses a decimal comma; write 1.5"),
        ("rate_ml_h=\uff11", "parameter rate_ml_h: '\uff11' is not a number"),  # fullwidth digit one
    ],
)
def test_bad_params_name_the_parameter_and_the_allowed_range(arg: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_params([arg], make_procedure())
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_record_says_where_given_values_came_from() -> None:
    proc = make_procedure()
    record = parse_params(["repeats=2"], proc, source="suite file").for_record(proc)
    assert record["repeats"]["source"] == "suite file"
    assert record["rate_ml_h"]["source"] == "default"


def test_param_given_twice_and_cross_parameter_check() -> None:
    with pytest.raises(UsageError, match="given more than once"):
        parse_params(["repeats=2", "repeats=3"], make_procedure())
    proc = make_procedure(checks=(lambda p: "too few" if p["rate_ml_h"] * p["repeats"] < 1 else None,))
    with pytest.raises(UsageError, match="parameters of demo: too few"):
        parse_params(["rate_ml_h=0.1"], proc)


def test_procedure_declaration_errors_are_caught_at_import() -> None:
    with pytest.raises(ValueError, match="default 20.0 is out of range"):
        Parameter("rate_ml_h", "mL/h", 20.0, low=0, high=10)
    with pytest.raises(ValueError, match="lower_snake_case"):
        Parameter("Rate", "mL/h", 1.0)
    with pytest.raises(ValueError, match="duplicate step"):
        make_procedure(steps=(Step("a", _noop), Step("a", _noop)))
    with pytest.raises(ValueError, match="duplicate step"):
        make_procedure(steps=(Step("a", _noop),), item_under_test=(Entry("a", "?"),))


def test_step_timeouts_and_durations_may_depend_on_parameters() -> None:
    step = Step("deliver", _noop, timeout_s=lambda p: p["minutes"] * 60 + 10, duration_s=lambda p: p["minutes"] * 60)
    assert step.timeouts({"minutes": 2}) == (130.0, 130.0)
    assert step.expected_s({"minutes": 2}) == 120.0
    assert Step("x", _noop, timeout_s=5, wall_timeout_s=1).timeouts({}) == (5.0, 1.0)
    assert Step("x", _noop, timeout_s=None).timeouts({}) == (math.inf, math.inf)  # type: ignore[arg-type]


# -- spec files ---------------------------------------------------------------------------------

GOOD_SPEC = """
[spec]
procedure = "demo"
version = "2.1"
title = "Demo limits"

[limits.error_pct]
low = -5.0
high = 5
unit = "%"
requirement = "REQ-1"
"""


def test_spec_loads_with_hash_and_inclusive_limits(tmp_path: Path) -> None:
    path = tmp_path / "demo.spec.toml"
    path.write_text(GOOD_SPEC)
    spec = load_spec(path, make_procedure())
    assert spec.version == "2.1"
    assert spec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    limit = spec.limit("error_pct")
    assert (limit.low, limit.high, limit.requirement) == (-5.0, 5.0, "REQ-1")
    assert [limit.evaluate(v) for v in (-5.0, 5.0, 0.0, 5.0001, -7)] == ["pass", "pass", "pass", "fail", "fail"]
    assert [limit.evaluate(v) for v in (None, math.nan, math.inf)] == ["fail", "fail", "fail"]
    assert Limit("x", "g", "R", high=1.0).evaluate(-1e9) == "pass"  # one-sided


def test_bad_spec_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "demo.spec.toml"
    path.write_text("""
[spec]
procedure = "other"
version = "1"

[limits.error_pct]
low = 5
high = -5
unit = "mL"
requirement = "REQ-1"
colour = "red"

[limits.extra_pct]
unit = "%"
requirement = "REQ-2"
""")
    with pytest.raises(ConfigError) as info:
        load_spec(path, make_procedure())
    text = str(info.value)
    for expected in (
        "spec.procedure is 'other' but the procedure is 'demo'",
        "limits.error_pct: low 5 is greater than high -5",
        "limits.error_pct: unknown key(s) colour",
        "limits.error_pct.unit is 'mL' but the measurement is in '%'",
        "limits.extra_pct needs low and/or high",
        "limits.extra_pct: procedure demo has no measurement of that name",
    ):
        assert expected in text
    assert info.value.exit_code == 2


def test_spec_missing_limit_and_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.spec.toml"
    path.write_text('[spec]\nprocedure = "demo"\nversion = "1"\n')
    with pytest.raises(ConfigError, match=r"no \[limits.error_pct\] for measurement error_pct"):
        load_spec(path, make_procedure())
    with pytest.raises(ConfigError, match="cannot be read"):
        load_spec(tmp_path / "missing.toml")
    path.write_text("[spec\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_spec(path)


# -- discovery ----------------------------------------------------------------------------------


def test_demo_procedure_is_discovered_with_source_and_spec_hashes() -> None:
    proc = procedures.load("delivery_check")
    assert proc.source_path == Path(procedures.__file__).parent / "delivery_check.py"
    assert proc.source_sha256() == hashlib.sha256(proc.source_path.read_bytes()).hexdigest()
    spec = proc.load_spec()
    assert set(spec.limits) == {m.name for m in proc.measurements}
    assert "delivery_check" in procedures.discover().procedures
    assert [e.id for e in proc.operator_steps()] == ["item_serial", "setup"]
    with pytest.raises(UsageError, match="parameters of delivery_check: rate_ml_h × duration_min gives 0.0167 mL"):
        parse_params(["rate_ml_h=0.1", "duration_min=10"], proc)


def test_unknown_procedure_suggests_the_closest() -> None:
    with pytest.raises(UsageError, match=r"unknown procedure 'delivery_chek' \(did you mean delivery_check\?\)"):
        procedures.load("delivery_chek")


# -- operator answers -----------------------------------------------------------------------------

STEPS = [Entry("serial", "Serial of the item", pattern=r"SN\d+", example="SN123"),
         Instruction("prime", "Prime the line"), Confirm("vessel", "Vessel on the balance?")]


def test_unattended_run_without_an_answer_refuses_naming_the_step() -> None:
    op = Operator("alice", {"serial": "SN1", "prime": "done"}, interactive=False)
    with pytest.raises(UsageError) as info:
        op.preflight(STEPS, "demo")
    assert "operator step 'vessel' ('Vessel on the balance?') needs an answer" in str(info.value)
    assert "--answer vessel=" in str(info.value)


def test_answers_are_validated_before_the_run() -> None:
    with pytest.raises(UsageError, match=r"answer for operator step 'serial'.*does not match the expected form SN\\d\+ \(e.g. SN123\)"):
        Operator("a", {"serial": "X1", "prime": "", "vessel": "y"}, interactive=False).preflight(STEPS, "demo")
    with pytest.raises(UsageError, match="answer 'yes' or 'no'"):
        Operator("a", {"serial": "SN1", "prime": "", "vessel": "maybe"}, interactive=False).preflight(STEPS, "demo")
    with pytest.raises(UsageError, match="answer given for 'seriall'.*its operator steps: serial, prime, vessel"):
        Operator("a", {"seriall": "SN1"}, interactive=False).preflight(STEPS, "demo")


def test_recorded_answer_says_who_how_and_when() -> None:
    op = Operator("alice", {"serial": " SN7 ", "vessel": "true"}, answers_via={"serial": "--answer"},
                  interactive=False)
    answer = op.ask(STEPS[0])
    assert (answer.answer, answer.answered_by, answer.via) == ("SN7", "alice", "--answer")
    assert answer.t_utc.endswith("Z")
    assert op.ask(STEPS[2]).answer == "yes"


def test_terminal_prompt_retries_until_the_answer_is_valid() -> None:
    import io

    out = io.StringIO()
    op = Operator("bob", interactive=True, stdin=io.StringIO("maybe\nno\n"), stdout=out)
    from rig.engine.operator import OperatorDeclined

    with pytest.raises(OperatorDeclined, match="operator bob answered no to 'vessel'"):
        op.ask(STEPS[2])
    assert "answer 'yes' or 'no'" in out.getvalue()


def test_answers_file_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text('serial = "SN1"\nvessel = true\nprime = "done"\n')
    assert load_answers_file(toml) == {"serial": "SN1", "vessel": "yes", "prime": "done"}
    js = tmp_path / "a.json"
    js.write_text(json.dumps({"serial": "SN2"}))
    assert load_answers_file(js) == {"serial": "SN2"}
    js.write_text("[1, 2]")
    with pytest.raises(UsageError, match="expected a table"):
        load_answers_file(js)
    with pytest.raises(UsageError, match="cannot be read"):
        load_answers_file(tmp_path / "nope.toml")
    assert parse_answer_args(["serial=SN=1"]) == {"serial": "SN=1"}
    with pytest.raises(UsageError, match="expected STEP=ANSWER"):
        parse_answer_args(["serial"])
