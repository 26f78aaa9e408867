"""What a nightly leaves for people and for CI: an aggregated junit.xml and a one-page HTML summary
with trend plots.

Why here and not in reports/: these views span a whole suite and the history database, while a
report bundle is one run and must stay verifiable without either. The per-run JUnit of each bundle
(reports.junit) is reused, so a measurement reads the same in the bundle and in the suite.

The HTML is self-contained and works offline: inline CSS, inline SVG plots drawn here (no
JavaScript, no fonts or images fetched), links to each run's report.html relative to the page.
"""

from __future__ import annotations

import html
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.analysis.trends import DEFAULT_RULE, Assessment, assess

TREND_RUNS = 30  # points per plot


# --------------------------------------------------------------------------------------------
# JUnit
# --------------------------------------------------------------------------------------------


def _entry_suite(e: Any) -> ET.Element:
    """One <testsuite> per suite entry: the bundle's testcases, or one error case."""
    from reports.junit import build_junit as bundle_junit

    if e.results is not None and not e.not_run:
        parsed = ET.fromstring(bundle_junit(e.results))
        found = parsed if parsed.tag == "testsuite" else parsed.find("testsuite")
        suite = found if found is not None else ET.Element("testsuite")
        prefix = f"{e.procedure_id}."
        for case in suite.iter("testcase"):
            classname = case.get("classname", "")
            case.set("classname", e.label + "." + (classname[len(prefix):] if classname.startswith(prefix) else classname))
    else:
        suite = ET.Element("testsuite")
        case = ET.SubElement(suite, "testcase", classname=f"{e.label}.run", name="run completed")
        kind = "NOT_RUN" if e.not_run else e.outcome
        ET.SubElement(case, "error", message=f"{kind}: {e.reason}", type=kind).text = e.reason
    suite.set("name", e.label)
    suite.set("time", f"{e.wall_s:.3f}")
    if e.started_utc:
        suite.set("timestamp", e.started_utc[:19])
    if e.problems:
        case = ET.SubElement(suite, "testcase", classname=f"{e.label}.nightly", name="report signed, verified and filed")
        ET.SubElement(case, "error", message="; ".join(e.problems), type="nightly").text = "\n".join(e.problems)
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    suite.set("skipped", "0")
    return suite


def build_junit(result: Any) -> bytes:
    """<testsuites> over every entry, totals on the root (what GitLab/GitHub/Jenkins read)."""
    root = ET.Element("testsuites", name=f"{result.suite.name} on {result.station_id}")
    for e in result.entries:
        root.append(_entry_suite(e))
    for attr in ("tests", "failures", "errors"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in root.findall("testsuite"))))
    root.set("time", f"{result.wall_s:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# --------------------------------------------------------------------------------------------
# Trend plots (inline SVG)
# --------------------------------------------------------------------------------------------


@dataclass
class Trend:
    label: str
    procedure_id: str
    name: str
    unit: str
    values: list[float | None]
    outcomes: list[str]
    low: float | None
    high: float | None
    assessment: Assessment


def trends_for(result: Any, history: Any) -> list[Trend]:
    """One series per (entry label, measurement) on this station, oldest first."""
    from rig.fleet.history import Filters

    out: list[Trend] = []
    for e in result.entries:
        if e.not_run or e.results is None:
            continue
        names = [m.get("name") for m in e.results.get("measurements") or []]
        for name in dict.fromkeys(n for n in names if n):
            points = history.measurements(Filters(procedure_id=e.procedure_id, measurement=name,
                                                  station_id=result.station_id, suite_label=e.label))
            points = points[-TREND_RUNS:]
            if not points:
                continue
            last = points[-1]
            values = [p.value for p in points]
            out.append(Trend(e.label, e.procedure_id, name, last.unit or "", values, [p.outcome for p in points],
                             last.low, last.high, assess(values, last.low, last.high)))
    return out


def _y_range(values: list[float], low: float | None, high: float | None) -> tuple[float, float]:
    candidates = values + [x for x in (low, high) if x is not None]
    lo, hi = min(candidates), max(candidates)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + pad


def svg_trend(trend: Trend, width: int = 340, height: int = 130) -> str:
    """A small line chart: limit band, limit lines, values (failures in red), drift fit."""
    left, right, top, bottom = 44, 8, 8, 18
    numbers = [v for v in trend.values if v is not None and math.isfinite(v)]
    if not numbers:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="340" height="30"><text x="4" y="20">no values</text></svg>'
    y0, y1 = _y_range(numbers, trend.low, trend.high)
    n = len(trend.values)

    def x(i: int) -> float:
        return left + (width - left - right) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - y0) / (y1 - y0))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(trend.name)} trend">']
    band_top = y(trend.high) if trend.high is not None else top
    band_bottom = y(trend.low) if trend.low is not None else height - bottom
    parts.append(f'<rect x="{left}" y="{band_top:.1f}" width="{width - left - right}" '
                 f'height="{max(0.0, band_bottom - band_top):.1f}" fill="#e8f5e9"/>')
    for limit in (trend.low, trend.high):
        if limit is not None:
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
                         'stroke="#c62828" stroke-dasharray="4 3"/>')
            parts.append(f'<text x="{left - 4}" y="{y(limit) + 4:.1f}" font-size="10" text-anchor="end" '
                         f'fill="#c62828">{limit:g}</text>')
    segment: list[str] = []
    for i, v in enumerate(trend.values):
        if v is None or not math.isfinite(v):
            if len(segment) > 1:
                parts.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{" ".join(segment)}"/>')
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(v):.1f}")
    if len(segment) > 1:
        parts.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{" ".join(segment)}"/>')
    for i, (v, outcome) in enumerate(zip(trend.values, trend.outcomes)):
        if v is None or not math.isfinite(v):
            continue
        colour = "#c62828" if outcome != "pass" else "#1565c0"
        r = 3.5 if i == n - 1 else 2.2
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{r}" fill="{colour}"/>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="10" fill="#555">{n} run(s), oldest left</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.4em}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.PASS{color:#1b5e20;font-weight:bold}.FAIL{color:#b71c1c;font-weight:bold}
.ERROR,.ABORTED,.INCOMPLETE,.NOTRUN{color:#6a1b9a;font-weight:bold}.meta{color:#555;font-size:.9em}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plot{border:1px solid #ddd;padding:.4em;width:350px}
.plot h3{font-size:.85em;margin:.1em 0 .3em}.flag{color:#b71c1c;font-weight:bold}.ok{color:#1b5e20}
.problems{color:#b71c1c;font-size:.85em}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _rel(target: Path | None, base: Path) -> str | None:
    if target is None:
        return None
    return os.path.relpath(Path(target).resolve(), base.resolve()).replace(os.sep, "/")


SIMULATED_BANNER = ('<p id="simulated" style="background:#fdd835;color:#212121;font-weight:bold;padding:.5rem .8rem">'
                    "SIMULATED: these runs used the simulated bench or a virtual clock; they are not "
                    "measurements of real equipment and not valid for release.</p>")


def build_summary_html(result: Any, history: Any | None) -> bytes:
    """The one-page summary (UTF-8 bytes)."""
    out_dir = Path(result.out_dir)
    verdict = {0: ("PASS", "all passed"), 1: ("FAIL", "at least one failure"),
               3: ("ERROR", "at least one error, abort or run not done")}[result.exit_code]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
    rows = []
    simulated = False
    for e in result.entries:
        css = "NOTRUN" if e.not_run else e.outcome
        shown = "NOT RUN" if e.not_run else e.outcome
        link = _rel(e.bundle / "report.html", out_dir) if e.bundle is not None else None
        report = f'<a href="{_esc(link)}">{_esc(e.report_id)}</a>' if link else "—"
        checks = []
        if e.bundle is not None:
            checks.append("signed" if e.signed else "unsigned")
            checks.append("verifies" if e.verified else "DOES NOT VERIFY")
        checks.append("filed" if e.history_filed else "not filed")
        problems = "".join(f'<div class="problems">{_esc(p)}</div>' for p in e.problems)
        verdict_doc = (e.results or {}).get("verdict") or {}
        simulated = simulated or bool(verdict_doc.get("simulated", e.results is None))
        release = str(verdict_doc.get("release") or "no report: not valid for release")
        rows.append(f"<tr><td>{_esc(e.label)}</td><td>{_esc(e.procedure_id)} {_esc(e.procedure_version)}</td>"
                    f'<td class="{css}">{shown}</td><td>{_esc(e.reason)}{problems}</td>'
                    f'<td class="{"ok" if release == "valid for release" else "problems"}">{_esc(release)}</td>'
                    f"<td>{e.wall_s:.1f} s</td><td>{report}</td><td>{_esc(', '.join(checks))}</td></tr>")
    if history is None:
        plots = "<p>No history database was available, so there are no trends this time.</p>"
    else:
        trends = trends_for(result, history)
        cards = []
        for t in trends:
            a = t.assessment
            status = (f'<span class="flag">{_esc(a.status.replace("_", " ").upper())}: {_esc(a.message)}</span>'
                      if a.flagged else f'<span class="ok">{_esc(a.status.replace("_", " "))}</span>'
                      f' <span class="meta">{_esc(a.message)}</span>')
            cards.append(f'<div class="plot"><h3>{_esc(t.label)} · {_esc(t.name)} [{_esc(t.unit)}]</h3>'
                         f"{svg_trend(t)}<div>{status}</div></div>")
        plots = (f'<p class="meta">Drift rule: {_esc(DEFAULT_RULE.describe())}.</p>'
                 f'<div class="plots">{"".join(cards) or "<p>No measurements yet.</p>"}</div>')
    stop = f"<p class=\"problems\">Stopped early: {_esc(result.stop_reason)}</p>" if result.stop_reason else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Nightly {_esc(result.suite.name)} on {_esc(result.station_id)}</title>
<style>{_STYLE}</style></head><body>
{SIMULATED_BANNER if simulated else ""}
<h1>Nightly {_esc(result.suite.name)} on station {_esc(result.station_id)}:
<span class="{verdict[0]}">{verdict[0]}</span> <span class="meta">({verdict[1]}; exit code {result.exit_code})</span></h1>
<p class="meta">Nightly {_esc(result.nightly_id)} · {_esc(result.started_utc)} → {_esc(result.finished_utc)} UTC ·
{result.wall_s:.1f} s of a {result.suite.budget_s / 60:g} min budget · {_esc(counts)}<br>
Suite file {_esc(result.suite.path)} · bundles signed by {_esc(result.signed_by or "nobody (unsigned)")} ·
history {_esc(result.history or "none")}</p>{stop}
<h2>Runs</h2>
<table><tr><th>entry</th><th>procedure</th><th>outcome</th><th>reason</th><th>release</th><th>wall time</th><th>report</th><th>bundle</th></tr>
{"".join(rows)}</table>
<h2>Trends on this station</h2>
{plots}
</body></html>
"""
    return page.encode("utf-8")


__all__ = ["Trend", "build_junit", "build_summary_html", "svg_trend", "trends_for"]
