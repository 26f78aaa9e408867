"""Benchmarks can fail: the verdict helper (benchmarks.verdict) and `make bench` (benchmarks.run_all).

Timing figures are never asserted here (a busy machine must not turn the suite red); what is
asserted is that a missed target turns into a FAIL line, a non-zero exit and a FAIL row in
results.md, and that each shipped benchmark judges its own figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import run_all
from benchmarks.verdict import Figure, conclude, parse

REPO = Path(__file__).resolve().parents[1]


def test_a_figure_meets_or_misses_its_target() -> None:
    assert Figure("ratio", 1.1, "", "<=", 1.15, baseline="raw").passed
    assert not Figure("ratio", 1.2, "", "<=", 1.15, baseline="raw").passed
    assert Figure("pace", 1.0, "", "in", (0.9, 1.02), absolute="wall clock").passed
    assert not Figure("pace", 0.8, "", "in", (0.9, 1.02), absolute="wall clock").passed
    assert not Figure("latency", None, "s", "<", 120.0, absolute="x").passed  # not measured = missed
    assert not Figure("latency", float("nan"), "s", "<", 120.0, absolute="x").passed


def test_a_figure_names_its_baseline_or_says_why_its_target_is_absolute() -> None:
    with pytest.raises(ValueError, match="either a same-run baseline or why the target is absolute"):
        Figure("x", 1.0, "", "<=", 2.0)
    with pytest.raises(ValueError, match="op must be one of"):
        Figure("x", 1.0, "", "~", 2.0, absolute="y")
    with pytest.raises(ValueError, match=r"needs target \(low, high\)"):
        Figure("x", 1.0, "", "in", 2.0, absolute="y")


def test_conclude_prints_every_verdict_and_fails_on_any_miss() -> None:
    lines: list[str] = []
    code = conclude([Figure("a", 1.0, "s", "<", 2.0, baseline="b 3 s"),
                     Figure("c", 5.0, "MB", "<", 2.0, absolute="flat memory")], out=lines.append)
    assert code == 1
    assert lines[0] == "VERDICT PASS | a | 1 s | < 2 s | same-run baseline: b 3 s"
    assert lines[1] == "VERDICT FAIL | c | 5 MB | < 2 MB | absolute target: flat memory"
    assert lines[2] == "1 of 2 figure(s) meet their targets; MISSED: c"
    assert parse("\n".join(lines)) == [(True, ["a", "1 s", "< 2 s", "same-run baseline: b 3 s"]),
                                       (False, ["c", "5 MB", "< 2 MB", "absolute target: flat memory"])]
    assert conclude([Figure("a", 1.0, "", "<", 2.0, baseline="b")], out=lines.append) == 0
    assert conclude([], out=lines.append) == 1  # a benchmark that judges nothing does not pass


def _fake_benchmarks(root: Path, **modules: str) -> Path:
    package = root / "fakebench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "verdict.py").write_text("raise SystemExit('not a benchmark: never run')\n")
    for name, body in modules.items():
        (package / f"{name}.py").write_text(body)
    return package


HEADER = f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom benchmarks.verdict import Figure, conclude\n"
MEETS = HEADER + "raise SystemExit(conclude([Figure('speed', 3.0, 'x', '>=', 2.0, baseline='1.0 x')]))\n"
MISSES = HEADER + "raise SystemExit(conclude([Figure('speed', 1.5, 'x', '>=', 2.0, absolute='none')]))\n"
LIES = HEADER + "print(Figure('speed', 1.5, 'x', '>=', 2.0, absolute='none').line())\n"  # FAIL line, exit 0
CRASHES = "raise RuntimeError('boom')\n"


def test_make_bench_fails_when_any_benchmark_misses_a_target(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    package = _fake_benchmarks(tmp_path, a_meets=MEETS, b_misses=MISSES, c_lies=LIES, d_crashes=CRASHES)
    assert run_all.discover(package) == ["a_meets", "b_misses", "c_lies", "d_crashes"]
    results = tmp_path / "results.md"
    assert run_all.main(["--dir", str(package), "--results", str(results)]) == 1
    text = results.read_text()
    assert "Verdict: **FAIL** (missed: b_misses, c_lies, d_crashes)" in text
    assert "| a_meets | speed | 3 x | >= 2 x | same-run baseline: 1.0 x | PASS |" in text
    assert "| b_misses | speed | 1.5 x | >= 2 x | absolute target: none | **FAIL** |" in text
    assert "| c_lies | speed | 1.5 x | >= 2 x | absolute target: none | **FAIL** |" in text
    assert "| d_crashes | (whole benchmark) | exit code 1 | exit code 0 | | **FAIL** |" in text
    assert "RuntimeError: boom" in text
    capsys.readouterr()


def test_make_bench_passes_when_every_target_holds(tmp_path: Path) -> None:
    package = _fake_benchmarks(tmp_path, a_meets=MEETS, b_misses=MISSES)
    results = tmp_path / "results.md"
    assert run_all.main(["--dir", str(package), "--results", str(results), "--only", "a_meets"]) == 0
    assert "Verdict: **PASS** (every figure meets its target)" in results.read_text()
    with pytest.raises(SystemExit):
        run_all.main(["--dir", str(package), "--only", "nope"])


def test_every_shipped_benchmark_is_found_by_make_bench() -> None:
    found = run_all.discover()
    assert {"visa_overhead", "daq_stream", "detection", "procedure_speed", "bundle_verify"} <= set(found)
    assert "verdict" not in found and "run_all" not in found


def test_detection_benchmark_fails_a_slow_occlusion_detector() -> None:
    from benchmarks import detection

    def row(fault: str, rate: float, latency: float | None) -> dict[str, object]:
        return {"fault": fault, "rate_ml_h": rate, "detector": fault, "latency_s": latency, "horizon_s": 3600.0,
                "also": {}, "note": ""}

    result = {"rows": [row("occlusion", 1.0, 69.0), row("occlusion", 0.1, 1500.0), row("backstop", 1.0, 2460.0),
                       row("backstop", 0.1, 24800.0), row("leak", 1.0, None)],
              "false_alarms": 1, "soak_hours": 10.0}
    lines: list[str] = []
    assert conclude(detection.figures(result), out=lines.append) == 1
    verdicts = {parts[0]: ok for ok, parts in parse("\n".join(lines))}
    assert verdicts == {"occlusion latency at 1 mL/h": True, "occlusion latency at 0.1 mL/h": False,
                        "leak at 1 mL/h detected by leak": False, "false alarms in 10 h of normal delivery": False}


def test_procedure_speed_fails_a_slow_runner_rig_run_or_nightly() -> None:
    from benchmarks import procedure_speed

    result = {"params": {"run_min": 120},
              "stations": {"shipped rig.toml": {"outcome": "PASS", "sim_s_per_wall_s": 4000.0}},
              "baseline_model_alone": {"sim_s_per_wall_s": 100000.0},
              "rig_run": {"exit_code": 0, "wall_s": 4.0}, "nightly": {"exit_code": 3, "wall_s": 5.0}}
    lines: list[str] = []
    assert conclude(procedure_speed.figures(result, quick=False), out=lines.append) == 1
    assert [ok for ok, _ in parse("\n".join(lines))] == [False, True, False]  # the nightly failed: not measured
    assert len(procedure_speed.figures(result, quick=True)) == 2  # --quick does not judge rig run (shorter run)


def test_long_run_fails_on_memory_or_a_slow_rig_show() -> None:
    from benchmarks import long_run

    result = {"run": {"days": 90, "exit_code": 0, "outcome": "PASS", "peak_rss_mb": 620.0},
              "show": {"exit_code": 0, "wall_s": 0.4},
              "report_reader": {"exit_code": 0, "stream_bytes": 4.1e8, "peak_rss_mb": 120.0}}
    lines: list[str] = []
    assert conclude(long_run.figures(result), out=lines.append) == 1
    assert [ok for ok, _ in parse("\n".join(lines))] == [False, True, True]
    result["run"]["peak_rss_mb"] = 150.0
    assert conclude(long_run.figures(result), out=lines.append) == 0
