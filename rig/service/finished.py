"""Finished runs on the panel: history, one run with its report and verify status, signing, trends.

Why the public report functions only (build/verify/sign in ``reports``): a signature made in the
browser must be exactly a `rig report sign` signature — same checks, same refusal reasons, same
audit entry. The passphrase lives in one local variable for the time it takes to decrypt the key
and is never logged, stored or echoed.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.bundle import load_manifest
from reports.keys import load_key_file
from reports.key_registry import Registry
from reports.signing import sign_bundle
from reports.verify import verify_bundle
from rig.analysis.trends import assess
from rig.errors import RigError, UsageError
from rig.record import read_record

MANIFEST = "manifest.json"
RECENT = 200  # runs listed on the history page


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    procedure: str
    version: str
    outcome: str
    reason: str
    operator: str
    started_utc: str
    run_dir: Path

    def public(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "procedure": self.procedure, "version": self.version,
                "outcome": self.outcome, "reason": self.reason, "operator": self.operator,
                "started_utc": self.started_utc}


def run_dirs(runs_dir: Path) -> list[Path]:
    """Run folders, newest first (run ids start with a UTC time stamp)."""
    if not runs_dir.is_dir():
        return []
    found = [p for p in runs_dir.iterdir() if (p / "record.jsonl").is_file()]
    return sorted(found, key=lambda p: (p / "record.jsonl").stat().st_mtime, reverse=True)


def summarise(run_dir: Path) -> RunSummary | None:
    try:
        record = read_record(run_dir)
    except (OSError, ValueError, RigError):
        return None
    started = (record.of_type("run_started") or [{}])[0]
    proc = started.get("procedure") or {}
    return RunSummary(run_dir.name, str(proc.get("id", "?")), str(proc.get("version", "")),
                      record.outcome, record.reason, str(started.get("operator", "")),
                      str(started.get("t_utc", "")), run_dir)


def list_runs(runs_dir: Path, limit: int = RECENT) -> list[RunSummary]:
    out = []
    for path in run_dirs(runs_dir)[:limit]:
        summary = summarise(path)
        if summary is not None:
            out.append(summary)
    return out


def find_run(runs_dir: Path, run_id: str) -> Path:
    """The run folder of ``run_id``; KeyError for anything that is not a run under runs_dir."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise KeyError(run_id)
    path = runs_dir / run_id
    if not (path / "record.jsonl").is_file():
        raise KeyError(run_id)
    return path


def bundles(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("report*") if (p / MANIFEST).is_file())


@dataclass(frozen=True)
class Trust:
    """Where the key registry is and which administrator keys the station pins."""

    registry_path: Path
    pinned: tuple[str, ...] = ()
    tsa: Any = None  # the station's time-stamp authority (reports.timestamp), None = none


def registry_of(trust: Trust) -> Registry | None:
    try:
        return Registry.load(trust.registry_path, pinned=trust.pinned, time_stamp_authority=trust.tsa)
    except (RigError, OSError, ValueError):
        return None


def verify_status(bundle: Path, trust: Trust) -> dict[str, Any]:
    registry = registry_of(trust)
    check = verify_bundle(bundle, registry, allow_unsigned=True)
    return {
        "bundle": bundle.name, "report_id": check.report_id, "verdict": check.verdict,
        "ok": check.ok, "unsigned": check.unsigned, "registry": registry is not None,
        "reasons": check.reasons(),
        "signatures": [{"role": s.role, "signer": s.statement.get("printed_name"),
                        "signer_id": s.statement.get("signer_id"), "signed_at": s.statement.get("signed_at"),
                        "ok": s.ok, "problems": s.problems} for s in check.signatures],
    }


def run_detail(run_dir: Path, trust: Trust) -> dict[str, Any]:
    record = read_record(run_dir)
    summary = summarise(run_dir)
    assert summary is not None
    safe = record.of_type("safe_state")
    entries = record.of_type("operator_entry")
    return {
        **summary.public(),
        "incomplete": record.finished is None,
        "measurements": [{k: m.get(k) for k in ("name", "value", "unit", "low", "high", "outcome",
                                                  "uncertainty", "requirement")} for m in record.measurements],
        "operator_entries": [{k: e.get(k) for k in ("step", "prompt", "answer", "answered_by", "via", "t_utc")}
                             for e in entries],
        "events": [{k: e.get(k) for k in ("kind", "detail", "t_proc_s")} for e in record.of_type("event")],
        "safe_state": ({"confirmed": safe[-1].get("confirmed"), "instruments": safe[-1].get("instruments"),
                        "error": safe[-1].get("error")} if safe else None),
        "bundles": [verify_status(b, trust) for b in bundles(run_dir)],
    }


def sign(run_dir: Path, bundle_name: str, role: str, key_path: str, passphrase: str,
         allowed_roles: tuple[str, ...], trust: Trust, audit_log: Path) -> Path:
    """Sign a bundle of this run; UsageError (with the reason, never the passphrase) if refused."""
    if role not in allowed_roles:
        raise PermissionError(f"your panel role may sign as {', '.join(allowed_roles) or 'nothing'}, "
                              f"not {role}")
    bundle = next((b for b in bundles(run_dir) if b.name == bundle_name), None)
    if bundle is None:
        raise UsageError(f"run {run_dir.name} has no report bundle {bundle_name!r}")
    if not key_path:
        raise UsageError("no signing key: your account names no key file (ask an admin: `rig users add "
                         "--key`), or give the key file")
    path = Path(key_path).expanduser()
    if not path.is_file():
        raise UsageError(f"signing key {path} does not exist")
    registry = Registry.load(trust.registry_path, pinned=trust.pinned, time_stamp_authority=trust.tsa)
    key = load_key_file(path, passphrase)
    return sign_bundle(bundle, key, role, registry, audit_log=audit_log)


def trends(runs_dir: Path, procedure: str | None = None) -> list[dict[str, Any]]:
    """Per procedure and measurement, the values of finished runs oldest first with their drift
    assessment (rig.analysis.trends), from the records under runs_dir (panel and `rig run` runs)."""
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for path in reversed(run_dirs(runs_dir)[:1000]):
        try:
            record = read_record(path)
        except (OSError, ValueError, RigError):
            continue
        if record.finished is None:
            continue
        proc = ((record.of_type("run_started") or [{}])[0].get("procedure") or {}).get("id", "?")
        if procedure and proc != procedure:
            continue
        for m in record.measurements:
            entry = series.setdefault((proc, m["name"]), {
                "procedure": proc, "measurement": m["name"], "unit": m.get("unit", ""),
                "low": m.get("low"), "high": m.get("high"), "runs": [], "values": []})
            entry["runs"].append(path.name)
            entry["values"].append(m.get("value"))
            entry["low"], entry["high"] = m.get("low"), m.get("high")
    out = []
    for entry in series.values():
        a = assess(entry["values"], entry["low"], entry["high"])
        out.append({**entry, "status": a.status, "message": a.message})
    return sorted(out, key=lambda e: (e["procedure"], e["measurement"]))


def nightly_summaries(runs_dir: Path) -> list[dict[str, Any]]:
    folder = runs_dir / "nightly"
    if not folder.is_dir():
        return []
    found = sorted((p for p in folder.iterdir() if (p / "summary.html").is_file()), reverse=True)
    return [{"id": p.name, "summary": f"nightly/{p.name}/summary.html",
             "modified_utc": _dt.datetime.fromtimestamp((p / "summary.html").stat().st_mtime,
                                                         _dt.timezone.utc).isoformat(timespec="seconds")}
            for p in found[:50]]


def manifest_verdict(bundle: Path) -> str | None:
    try:
        return str(load_manifest(bundle)[0].get("verdict"))
    except (ValueError, OSError):
        return None


__all__ = ["RunSummary", "bundles", "find_run", "list_runs", "nightly_summaries", "run_detail", "sign",
           "summarise", "trends", "verify_status"]
