"""junit.xml for CI: one testcase per measurement; a run that did not complete is an error case.

Why: CI runners (GitLab, GitHub, Jenkins) understand JUnit; a failing measurement must show its
value and limits in the CI page without opening the bundle.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from reports.formatting import limits_text, uncertainty_text, value_text


def _failure_text(m: dict[str, Any]) -> str:
    return (f"{m['name']} = {value_text(m)} ({uncertainty_text(m)}) outside limits "
            f"{limits_text(m)} (requirement {m.get('requirement') or 'none'})").replace("  ", " ")


def build_junit(results: dict[str, Any]) -> bytes:
    """The junit.xml bytes for a results document."""
    procedure = str((results.get("procedure") or {}).get("id") or "procedure")
    verdict = results["verdict"]
    measurements = results.get("measurements") or []
    suite = ET.Element("testsuite", name=procedure)
    props = ET.SubElement(suite, "properties")
    station = results["station"]
    simulated = bool(verdict.get("simulated", True))
    for key, value in (("report_id", results.get("report_id")), ("run_id", results["run"].get("run_id")),
                       ("station", station.get("id")), ("station.mode", station.get("mode")),
                       ("clock", station.get("clock")), ("simulated", "yes" if simulated else "no"),
                       ("verdict", verdict["outcome"]),
                       ("valid_for_release", "yes" if verdict.get("valid_for_release") else "no"),
                       ("release", verdict.get("release", "unknown"))):
        ET.SubElement(props, "property", name=key, value=str(value))
    failures = errors = 0
    for m in measurements:
        case = ET.SubElement(suite, "testcase", classname=f"{procedure}.{m.get('requirement') or 'unassigned'}",
                             name=str(m.get("name")))
        case_props = ET.SubElement(case, "properties")
        for key, value in (("value", value_text(m)), ("uncertainty", uncertainty_text(m)),
                           ("limits", limits_text(m))):
            ET.SubElement(case_props, "property", name=key, value=value)
        if m["outcome"] == "fail":
            failures += 1
            ET.SubElement(case, "failure", message=_failure_text(m), type="limit").text = _failure_text(m)
        elif m["outcome"] == "error":
            errors += 1
            ET.SubElement(case, "error", message=f"{m.get('name')}: no pass/fail decision recorded", type="no-decision")
    conditions = verdict.get("conditions") or []
    if conditions:
        errors += 1
        case = ET.SubElement(suite, "testcase", classname=f"{procedure}.run", name="validity conditions")
        ET.SubElement(case, "error", message=str(verdict.get("release")),
                      type="not-valid-for-release").text = "\n".join(conditions)
    if verdict["outcome"] in ("INCOMPLETE", "ABORTED", "ERROR"):
        errors += 1
        case = ET.SubElement(suite, "testcase", classname=f"{procedure}.run", name="run completed")
        ET.SubElement(case, "error", message=f"run {verdict['outcome']}: {verdict['reason']}",
                      type=verdict["outcome"]).text = str(verdict["reason"])
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suites = ET.Element("testsuites", name=f"rig {results.get('report_id')}{' SIMULATED' if simulated else ''}", tests=suite.get("tests", "0"),
                        failures=str(failures), errors=str(errors))
    suites.append(suite)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"
