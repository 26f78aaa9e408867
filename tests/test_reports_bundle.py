"""Report bundle building: results.json, report.html, junit.xml, manifest, for every outcome."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from reports.bundle import build_bundle, load_manifest
from reports.canonical import (
    CanonicalJSONError,
    canonical_json,
    format_number,
    sha256_hex,
)
from reports.html import split_signature_block
from reports.plots import gravimetric_flow_ml_h, trumpet_points
from reports.synthetic import write_record
from reports.verify import verify_bundle
from rig.errors import UsageError
from rig.record import RecordWriter


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for outcome in ("PASS", "FAIL", "ABORTED", "INCOMPLETE"):
        run = write_record(root / f"run-{outcome}", outcome, duration_s=900.0)
        out[outcome] = build_bundle(run, audit_log=root / "audit.jsonl")
    return out


def results_of(bundle: Path) -> dict:
    return json.loads((bundle / "results.json").read_bytes())


def test_canonical_json_is_stable_and_strict() -> None:
    assert canonical_json({"b": 1.0, "a": [1e-7, 0.1, "é"], "c": None}) == '{"a":[1e-7,0.1,"é"],"b":1,"c":null}'.encode()
    assert format_number(1e21) == "1e+21" and format_number(123456.5) == "123456.5"
    with pytest.raises(CanonicalJSONError, match=r"\$\.x"):
        canonical_json({"x": float("nan")})


@pytest.mark.parametrize("outcome,shown", [("PASS", "PASS"), ("FAIL", "FAIL"), ("ABORTED", "ABORTED"),
                                           ("INCOMPLETE", "INCOMPLETE")])
def test_verdict_is_the_record_outcome(bundles: dict[str, Path], outcome: str, shown: str) -> None:
    results = results_of(bundles[outcome])
    assert results["verdict"]["outcome"] == shown
    assert results["verdict"]["complete"] is (outcome != "INCOMPLETE")
    manifest, _ = load_manifest(bundles[outcome])
    assert manifest["verdict"] == shown and manifest["report_id"] == results["report_id"]
    html = (bundles[outcome] / "report.html").read_text(encoding="utf-8")
    assert f'class="banner v-{shown}"' in html
    if outcome != "PASS":
        assert "Verdict: PASS" not in html
    if outcome == "INCOMPLETE":
        assert "INCOMPLETE RUN" in html


def test_results_json_is_canonical_and_complete(bundles: dict[str, Path]) -> None:
    bundle = bundles["FAIL"]
    data = (bundle / "results.json").read_bytes()
    results = json.loads(data)
    assert canonical_json(results) == data
    assert results["run"]["record_sha256"] == sha256_hex((bundle / "record.jsonl").read_bytes())
    assert results["procedure"]["spec_sha256"] == "b" * 64
    mean = next(m for m in results["measurements"] if m["name"] == "flow.mean_error_pct")
    assert mean == {**mean, "value": 7.2, "unit": "%", "low": -5, "high": 5, "requirement": "REQ-FLOW-001",
                    "outcome": "fail", "uncertainty": {"expanded": 0.8, "k": 2}}
    assert "ILAC" in mean["decision_rule"]
    status = {e["name"]: e["calibration_status"] for e in results["station"]["equipment"]}
    assert status == {"balance": "OVERDUE", "daq": "valid", "pump": "valid"}


def test_pass_record_with_a_failed_measurement_is_not_shown_as_pass(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "run")
    writer.append("run_started", run_id="x", t_utc="2026-01-01T00:00:00Z", station={}, procedure={"id": "p"})
    writer.append("measurement", name="m", value=9.0, unit="%", low=0, high=5, requirement="R", outcome="fail")
    writer.append("run_finished", outcome="PASS", reason="bug", t_utc="2026-01-01T00:01:00Z")
    writer.close()
    bundle = build_bundle(tmp_path / "run", audit_log=tmp_path / "audit.jsonl")
    assert results_of(bundle)["verdict"]["outcome"] == "ERROR"


def test_html_is_self_contained_with_plots(bundles: dict[str, Path]) -> None:
    html = (bundles["PASS"] / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", html, re.IGNORECASE)
    assert not re.search(r"<(script|link|img|iframe)\b", html, re.IGNORECASE)
    assert html.count("<svg") == 3
    for plot in ("plot-flow", "plot-trumpet", "plot-pressure"):
        assert f'id="{plot}"' in html
    for item in ("Report id", "Method", "Item tested", "Uncertainty", "Decision rule", "Calibration due", "OVERDUE"):
        assert item in html
    emptied, block = split_signature_block(html.encode())
    assert b"Not signed" in block


def test_no_trumpet_plot_without_trumpet_measurements(bundles: dict[str, Path]) -> None:
    html = (bundles["INCOMPLETE"] / "report.html").read_text(encoding="utf-8")
    assert 'id="plot-trumpet"' not in html and 'id="plot-pressure"' in html


# Every synthetic record has an overdue balance: one more error testcase "validity conditions".
@pytest.mark.parametrize("outcome,tests,failures,errors", [("PASS", 13, 0, 1), ("FAIL", 13, 1, 1),
                                                           ("ABORTED", 14, 0, 2), ("INCOMPLETE", 3, 0, 2)])
def test_junit_counts(bundles: dict[str, Path], outcome: str, tests: int, failures: int, errors: int) -> None:
    root = ET.parse(bundles[outcome] / "junit.xml").getroot()
    suite = root.find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["simulated"] == "yes" and props["station.mode"] == "sim" and props["clock"] == "virtual"
    assert props["valid_for_release"] == "no"
    assert props["release"].startswith("NOT VALID FOR RELEASE: balance calibration overdue since 2024-01-31")
    condition = suite.find("testcase[@name='validity conditions']/error")
    assert condition.get("type") == "not-valid-for-release"
    assert (int(suite.get("tests")), int(suite.get("failures")), int(suite.get("errors"))) == (tests, failures, errors)
    assert len(suite.findall("testcase")) == tests
    if failures:
        failure = suite.find("testcase/failure")
        assert "= 7.20 % (± 0.80 % (k = 2))" in failure.get("message") and "-5 … 5 %" in failure.get("message")


def test_manifest_covers_every_file(bundles: dict[str, Path]) -> None:
    bundle = bundles["PASS"]
    manifest, data = load_manifest(bundle)
    assert canonical_json(manifest) == data
    paths = [f["path"] for f in manifest["files"]]
    assert paths == sorted(["junit.xml", "raw/balance.csv", "raw/daq.csv", "raw/pump.csv", "record.jsonl",
                            "report.html", "results.json"])
    raw = next(f for f in manifest["files"] if f["path"] == "raw/daq.csv")
    assert raw["sha256"] == sha256_hex((bundle / "raw/daq.csv").read_bytes())
    assert manifest["generator"]["version"] and manifest["created_at"].endswith("Z")
    assert manifest["station"]["id"] == "SIM-BENCH-01" and manifest["supersedes"] is None
    check = verify_bundle(bundle, None, allow_unsigned=True)
    assert check.ok, check.reasons()
    assert not verify_bundle(bundle, None).ok  # unsigned is not valid by default


def test_reissue_needs_supersedes(tmp_path: Path) -> None:
    run = write_record(tmp_path / "run", "PASS", duration_s=300.0)
    first = build_bundle(run, audit_log=tmp_path / "a.jsonl")
    first_id = load_manifest(first)[0]["report_id"]
    with pytest.raises(UsageError, match="--supersedes"):
        build_bundle(run, audit_log=tmp_path / "a.jsonl")
    with pytest.raises(UsageError, match="--supersedes"):
        build_bundle(run, tmp_path / "elsewhere", audit_log=tmp_path / "a.jsonl")
    second = build_bundle(run, supersedes=first_id, audit_log=tmp_path / "a.jsonl")
    assert second.name == "report-2" and load_manifest(second)[0]["supersedes"] == first_id
    assert load_manifest(second)[0]["report_id"] != first_id
    assert [json.loads(l)["kind"] for l in (tmp_path / "a.jsonl").read_text().splitlines()] == ["report_built"] * 2


def test_gravimetric_flow_and_trumpet_names() -> None:
    t = np.arange(0.0, 3601.0, 1.0)
    t_out, q = gravimetric_flow_ml_h(t, t * 6.0 * 0.998 / 3600.0, 0.998, interval_s=30.0)
    assert np.allclose(q, 6.0) and t_out[0] == 30.0
    points = trumpet_points([{"name": n, "value": 1.0} for n in
                             ("flow.trumpet.P2.ep_max", "flow.trumpet.ep_min_5min", "flow.trumpet.11.max", "flow.mean")])
    assert [p for p, _ in points["max"]] == [2.0, 11.0] and [p for p, _ in points["min"]] == [5.0]


def test_binary_daq_stream_is_plotted(tmp_path: Path) -> None:
    """The runner streams the DAQ as float64 scans + header + index (instruments.daq_stream)."""
    from instruments.daq_stream import StreamWriter

    run = write_record(tmp_path / "run", "PASS", duration_s=300.0)
    (run / "raw" / "daq.csv").unlink()
    writer = StreamWriter(run / "raw" / "daq.f64", {
        "rate_hz": 10.0, "channels": ["pressure_upstream", "pressure_downstream", "flow_sensor"],
        "units": ["kPa", "kPa", "uL/min"], "started_utc": "2026-01-10T09:00:01Z"})
    for first in range(0, 3000, 50):
        writer.write(first, np.vstack([np.full(50, 4.0 + first / 100.0), np.full(50, 2.0), np.full(50, 16.7)]))
    writer.close()
    bundle = build_bundle(run, audit_log=tmp_path / "a.jsonl")
    html = (bundle / "report.html").read_text(encoding="utf-8")
    assert 'id="plot-pressure"' in html and "could not be plotted" not in html
    from reports.plots import _concat_daq

    daq = _concat_daq(bundle / "raw", "2026-01-10T09:00:00.000000Z")
    assert daq["t_s"][0] == 1.0 and daq["pressure_upstream_kpa"][-1] == pytest.approx(4.0 + 2950 / 100.0)
    assert daq["flow_ul_min"][0] == 16.7
