"""What a reviewer reads (issue 17): every measurement with its GUM budget and rounded to its
uncertainty the same way everywhere, requirement statements next to their ids, parameters with
their effective values, steps numbered from 1, yes/no measurements in words, the item under test
bound to the serial the bench knows, operators that are identities.

Hand-computed budgets are checked against rig.analysis.uncertainty; one flow_accuracy run on the
simulated bench (through `rig run`) feeds the report checks.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from tests.cli import run_rig

import procedures
from reports.formatting import limits_text, uncertainty_text, value_text
from rig.analysis.uncertainty import BalanceCalibration, gravimetric_budget, round_to_uncertainty
from rig.engine.spec import Limit, load_spec

REPO = Path(__file__).resolve().parents[1]
SERIAL = "NE1000-SIM-0001"


def rig(*args: Any, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `rig` (tests/cli.py: fails on any traceback), wide enough for rich tables."""
    return run_rig(*map(str, args), env={"COLUMNS": "200", **(env or {})}, timeout=timeout)


# -- budgets, by hand ---------------------------------------------------------------------------


def test_gravimetric_budget_matches_hand_computation() -> None:
    cal = BalanceCalibration(resolution_g=0.0001, repeatability_g=0.0001, linearity_g=0.0002,
                             evaporation_g_h=0.0005, timing_s=0.1)
    # flow.mean_error_pct at 1 mL/h: 60 min window, 0.998 g collected
    b = gravimetric_budget(mass_g=0.998, duration_s=3600.0, density_g_ml=0.998, density_u_g_ml=0.0005, balance=cal)
    u = {c.quantity: c.u for c in b.components}
    assert u["balance resolution"] == pytest.approx(100 / 0.998 * math.sqrt(2) * 0.0001 / math.sqrt(12))
    assert u["balance repeatability"] == pytest.approx(100 / 0.998 * math.sqrt(2) * 0.0001)
    assert u["balance linearity"] == pytest.approx(100 / 0.998 * 0.0002 / math.sqrt(3))
    assert u["evaporation"] == pytest.approx(100 / 0.998 * 0.0005 * 1.0 / math.sqrt(3))
    assert u["air buoyancy"] == pytest.approx(100 * 0.0012 * (1 / 0.998 - 1 / 8.0) / math.sqrt(3))
    assert u["fluid density"] == pytest.approx(100 * 0.0005 / 0.998 / math.sqrt(3))
    assert u["timing"] == pytest.approx(100 * math.sqrt(2) * 0.1 / math.sqrt(3) / 3600)
    assert b.expanded == pytest.approx(2 * math.sqrt(sum(x * x for x in u.values())))
    assert b.expanded == pytest.approx(0.1513, abs=5e-4)  # air buoyancy dominates at 1 g
    # one 2-min trumpet window at 0.01 mL/h: 0.333 mg collected; resolution and evaporation dominate
    low = gravimetric_budget(mass_g=0.01 * 0.998 * 2 / 60, duration_s=120.0, density_g_ml=0.998,
                             density_u_g_ml=0.0005, balance=cal)
    assert low.expanded == pytest.approx(2 * math.sqrt(sum(c.u ** 2 for c in low.components)))
    assert low.expanded > 50 * b.expanded


def test_rounding_to_uncertainty_is_one_rule() -> None:
    assert round_to_uncertainty(-0.14028056112223575, 0.0082) == "-0.1403"
    assert round_to_uncertainty(-0.14028056112223575, 0.15) == "-0.14"
    assert round_to_uncertainty(7.2, 0.8) == "7.20"
    assert round_to_uncertainty(-0.0004, 0.15) == "0.00"  # never "-0.00"
    assert round_to_uncertainty(-0.14028056112223575, None) == "-0.1403"
    m = {"value": -0.14028056112223575, "unit": "%", "uncertainty": {"expanded": 0.0082, "k": 2}}
    assert value_text(m) == "-0.1403 %" and uncertainty_text(m) == "± 0.0082 % (k = 2)"


def test_booleans_read_yes_no_with_the_criterion() -> None:
    m = {"value": 1.0, "unit": "", "low": 1.0, "high": 1.0, "value_type": "boolean",
         "criterion": "the leak detector alarmed after the leak path was opened"}
    assert value_text(m) == "yes" and value_text({**m, "value": 0.0}) == "no"
    assert limits_text(m) == "must be yes: the leak detector alarmed after the leak path was opened"
    assert uncertainty_text(m) == "not applicable (yes/no)"


def test_guarded_acceptance_moves_the_limits_in_by_U(tmp_path: Path) -> None:
    simple = Limit("x", "%", "REQ-1", low=-5.0, high=5.0)
    guarded = Limit("x", "%", "REQ-1", low=-5.0, high=5.0, acceptance="guarded")
    assert simple.evaluate(4.9, 0.2) == "pass"
    assert guarded.evaluate(4.9, 0.2) == "fail" and guarded.evaluate(4.7, 0.2) == "pass"
    assert guarded.evaluate(0.0, None) == "fail"  # guarded without an uncertainty cannot pass
    spec = tmp_path / "s.spec.toml"
    spec.write_text('[spec]\nprocedure = "p"\nversion = "1"\nacceptance = "guarded"\n'
                    '[requirements]\n"REQ-1" = "x shall be small"\n'
                    '[limits.x]\nlow = -5.0\nhigh = 5.0\nunit = "%"\nrequirement = "REQ-1"\n', encoding="utf-8")
    loaded = load_spec(spec)
    assert loaded.limits["x"].acceptance == "guarded" and "guarded acceptance" in loaded.limits["x"].decision_rule
    assert loaded.requirements == {"REQ-1": "x shall be small"}


def test_every_shipped_spec_states_every_requirement() -> None:
    found = procedures.discover()
    assert found.procedures and not found.broken
    for pid, proc in found.procedures.items():
        spec = proc.load_spec()
        raw = tomllib.loads(spec.path.read_text(encoding="utf-8"))
        assert "requirements" in raw, f"{pid}: spec file has no [requirements] table"
        for req in proc.requirements:
            assert spec.requirements.get(req, "").strip(), f"{pid}: no statement for {req}"


# -- one flow_accuracy run through the CLI -------------------------------------------------------


# The nightly suite's short flow_accuracy (suites/nightly.toml): a 32 min run whose analysis window
# still holds the longest trumpet window (P = 31 min), so the report has every measurement of the
# default 120 min run at a quarter of the cost.
SHORT_FLOW = ("--param", "run_min=32", "--param", "analysis_start_min=1", "--param", "analysis_end_min=32")


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory: pytest.TempPathFactory, station_writer: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("content")
    station = station_writer(root)
    proc = rig("run", "flow_accuracy", "--station", station, "--plain", "--operator", "T. Tester",
               "--answer", f"item_serial={SERIAL}", "--answer", "setup=done", *SHORT_FLOW,
               env={"RIG_AUDIT_LOG": str(root / "audit.jsonl"), "RIG_LOCK_DIR": str(root / "locks")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next(p for p in (root / "runs").iterdir() if p.is_dir())
    bundle = run_dir / "report"
    return {"root": root, "station": station, "run_dir": run_dir, "bundle": bundle,
            "results": json.loads((bundle / "results.json").read_text(encoding="utf-8")),
            "html": (bundle / "report.html").read_text(encoding="utf-8")}


def test_mean_error_and_every_trumpet_window_carry_a_budget(flow_run: dict[str, Any]) -> None:
    measured = {m["name"]: m for m in flow_run["results"]["measurements"]}
    gravimetric = [n for n in measured if n.startswith("flow.mean") or n.startswith("flow.trumpet")]
    assert len(gravimetric) == 11
    for name in gravimetric:
        u = measured[name]["uncertainty"]
        assert u["k"] == 2 and u["expanded"] > 0, name
        quantities = {c["quantity"] for c in u["components"]}
        assert {"balance resolution", "balance repeatability", "balance linearity", "evaporation",
                "air buoyancy", "fluid density", "timing"} <= quantities, name
        assert any("station calibration data" in c["source"] for c in u["components"])
    # shorter windows collect less mass: larger uncertainty
    assert measured["flow.trumpet.P2.max_pct"]["uncertainty"]["expanded"] > \
        measured["flow.trumpet.P31.max_pct"]["uncertainty"]["expanded"]
    page = flow_run["html"]
    assert "raw/flow_samples.csv, the procedure&#39;s own IEC 60601-2-24 analysis" in page  # not a second formula
    assert '<section id="uncertainty">' in page and "<h3>flow.mean_error_pct: ±" in page
    assert "station calibration data: d = 0.0001 g, two readings" in page


def test_one_rounding_in_html_junit_and_cli(flow_run: dict[str, Any]) -> None:
    mean = next(m for m in flow_run["results"]["measurements"] if m["name"] == "flow.mean_error_pct")
    text = value_text(mean)
    assert isinstance(mean["value"], float) and text != f"{mean['value']} %"  # results.json: full precision
    assert f'<td class="num">{text}</td>' in flow_run["html"]
    case = ET.parse(flow_run["bundle"] / "junit.xml").getroot().find(".//testcase[@name='flow.mean_error_pct']")
    assert {p.get("name"): p.get("value") for p in case.iter("property")}["value"] == text
    shown = rig("show", flow_run["run_dir"])
    assert f"flow.mean_error_pct = {text} ({uncertainty_text(mean)})" in shown.stdout
    report_show = rig("report", "show", flow_run["bundle"])
    assert text in report_show.stdout


def test_requirements_parameters_and_steps_read_plainly(flow_run: dict[str, Any]) -> None:
    page = flow_run["html"]
    statement = flow_run["results"]["procedure"]["requirement_statements"]["REQ-FLOW-001"]
    assert f"REQ-FLOW-001: {statement}" in page
    assert "station fluid.density_g_ml: 0.998 g/mL" in page  # not "value: 0"
    assert "no evaporation correction" in page
    assert re.search(r"<tr><td>density_g_ml</td><td>[^<]+</td><td>g/mL</td><td>default</td>", page)
    steps = re.findall(r"<tr><td>(\d+)</td><td>(setup|prepare|deliver|evaluate)</td>", page)
    assert steps == [("1", "setup"), ("2", "prepare"), ("3", "deliver"), ("4", "evaluate")]
    shown = rig("show", flow_run["run_dir"]).stdout
    assert "1. setup: done" in shown and f"REQ-FLOW-001: {statement}" in shown


def test_item_under_test_is_the_item_not_equipment(flow_run: dict[str, Any]) -> None:
    results = flow_run["results"]
    item = results["item_under_test"]
    assert item["entered"] == {"item_serial": SERIAL}
    assert item["instrument"]["name"] == "pump" and item["instrument"]["serial"] == SERIAL
    assert "pump" not in {e["name"] for e in results["station"]["equipment"]}
    equipment = flow_run["html"].split('<section id="equipment">')[1].split("</section>")[0]
    assert SERIAL not in equipment


def test_entered_serial_must_match_the_item(tmp_path: Path, station_writer: Any) -> None:
    station = station_writer(tmp_path)
    proc = rig("run", "delivery_check", "--station", station, "--plain", "--operator", "T. Tester",
               "--answer", "item_serial=SN-WRONG-7", "--answer", "setup=done", "--param", "duration_min=6")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("item under test: serial 'SN-WRONG-7' was entered, but instruments.pump is named in the station "
            f"file with serial '{SERIAL}'") in proc.stderr
    assert not (tmp_path / "runs").exists() or not any(p.is_dir() for p in (tmp_path / "runs").iterdir())


def test_operator_is_an_identity(tmp_path: Path, station_writer: Any) -> None:
    station = station_writer(tmp_path, set={"operators.names": ["T. Tester", "A. Tech"]})
    empty = rig("run", "delivery_check", "--station", station, "--operator", "",
                "--answer", f"item_serial={SERIAL}", "--answer", "setup=done")
    assert empty.returncode == 2 and "--operator is empty" in empty.stderr
    stranger = rig("run", "delivery_check", "--station", station, "--operator", "S. Olo",
                   "--answer", f"item_serial={SERIAL}", "--answer", "setup=done")
    assert stranger.returncode == 2
    assert "--operator 'S. Olo' is not a known operator of station SIM-BENCH-01; known: A. Tech, T. Tester" \
        in stranger.stderr


# -- the rendered page (headless Chromium) --------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
STRIPE_YELLOW = (0xFD, 0xD8, 0x35)  # .sim-banner stripes


def screenshot(page: Path, out: Path, tmp_path: Path) -> Any:
    """The first screen (1280 x 900) of ``page`` as Chromium renders it, as a Pillow image."""
    from PIL import Image

    done = subprocess.run([str(CHROMIUM), *CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--window-size=1280,900", f"--screenshot={out}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=90)
    assert out.is_file(), done.stderr[-2000:]
    return Image.open(out).convert("RGB")


def yellow_pixels(image: Any, rows: int) -> int:
    width = image.size[0]
    pixels = image.load()
    return sum(1 for y in range(0, rows, 2) for x in range(0, width, 2)
               if all(abs(a - b) <= 12 for a, b in zip(pixels[x, y], STRIPE_YELLOW)))


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian chromium is not installed at /usr/bin/chromium "
                    "(.ci/install-chromium.sh installs it where apt and root are available)")
def test_rendered_report_shows_the_simulated_banner_in_the_first_screen(flow_run: dict[str, Any], tmp_path: Path) -> None:
    image = screenshot(flow_run["bundle"] / "report.html", tmp_path / "sim.png", tmp_path)
    assert image.size == (1280, 900)
    top = yellow_pixels(image, 150)  # the banner is the first thing on the page
    assert top > 500, f"only {top} banner-yellow pixels in the first 150 px"
    # negative control: the same page from a hardware station has no banner
    from reports.bundle import build_bundle
    from reports.synthetic import write_record

    run = write_record(tmp_path / "hw" / "run", "PASS", duration_s=120.0)
    record = run / "record.jsonl"
    lines = record.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["station"]["station"].update(mode="hardware", clock="real")
    record.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n", encoding="utf-8")
    bundle = build_bundle(run, audit_log=tmp_path / "audit.jsonl")
    hardware = screenshot(bundle / "report.html", tmp_path / "hw.png", tmp_path)
    assert yellow_pixels(hardware, 900) == 0


def test_latency_pressure_and_volume_budgets_by_hand() -> None:
    from types import SimpleNamespace

    from procedures._uncertainty import latency_uncertainty, pressure_uncertainty, volume_uncertainty
    from rig.station.config import load_station

    station = load_station(REPO / "rig.toml")
    ctx = SimpleNamespace(station=station)
    lat = latency_uncertainty(ctx, alarm_step_s=0.5, what="x")  # shipped DAQ: 20 Hz, 20-sample chunks = 1 s
    assert lat["unit"] == "min"
    assert lat["u_c"] == pytest.approx(math.hypot(0.5 / math.sqrt(12), 1.0 / math.sqrt(12)) / 60)
    p = pressure_uncertainty(ctx, what="y")  # 50 kPa/V, 16 bit over 20 V; default ± 0.5 kPa sensor
    assert p["u_c"] == pytest.approx(math.hypot(0.5 / math.sqrt(3), 50 * 20 / 2 ** 16 / math.sqrt(12)))
    assert "default" in p["components"][0]["source"]
    v = volume_uncertainty(ctx, volume_ml=0.5, duration_s=600.0, density_g_ml=0.998, what="bolus")
    assert v["unit"] == "mL"
    rel = gravimetric_budget(mass_g=0.5 * 0.998, duration_s=600.0, density_g_ml=0.998, density_u_g_ml=0.0005,
                             balance=BalanceCalibration.from_mapping(station.instruments["balance"].calibration))
    assert v["expanded"] == pytest.approx(rel.expanded * 0.5 / 100)
