"""Build a report bundle from a run record; read a bundle back.

Layout of a bundle directory::

    results.json     authoritative results (canonical JSON)
    report.html      the human report (self-contained; signatures block, see reports.html)
    junit.xml        one testcase per measurement, for CI
    record.jsonl     the run record itself, byte for byte (its sha256 is in results.json)
    raw/             the record's raw data files, copied
    manifest.json    sha256 + size of every file above (canonical JSON); signatures sign its hash
    signatures/      NN-role.dsse.json, added later by `rig report sign`

Why build in a temporary sibling directory and rename at the end: a crash while copying a large
raw file must not leave something that looks like a bundle.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports import audit
from reports.canonical import canonical_json, load_json_bytes, sha256_hex
from reports.html import render_report
from reports.junit import build_junit
from reports.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURES_DIR,
    build_manifest,
    copy_and_hash,
)
from reports.plots import build_plots
from reports.results import build_results, station_identity
from rig.errors import UsageError
from rig.identity import software_identity
from rig.record import read_record, utc_now
from rig.safeio import UnsafeFileError, read_regular, regular_files_under

DEFAULT_BUNDLE_NAME = "report"
SIGNATURE_FILE = re.compile(r"^(\d{2})-([a-z_]+)\.dsse\.json$")
TOKEN_FILE = re.compile(r"^(\d{2})-([a-z_]+)\.tst$")  # an RFC 3161 token over the envelope of the same name


def generator_info() -> dict[str, Any]:
    """Version and git commit of the code that builds the bundle (traceability of the tool)."""
    ident = software_identity()
    return {"name": "rig", "version": ident["version"], "git_commit": ident["git_sha"] or "unknown",
            "git_dirty": ident["git_dirty"]}


def _existing_bundles(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob(f"{DEFAULT_BUNDLE_NAME}*") if (p / MANIFEST_NAME).is_file())


def _require_supersedes(run_dir: Path, supersedes: str | None) -> list[Path]:
    """A run with a bundle already gets another one only as an explicit reissue."""
    existing = _existing_bundles(run_dir)
    if existing and supersedes is None:
        ids = ", ".join(f"{load_manifest(p)[0].get('report_id')} ({p})" for p in existing)
        raise UsageError(f"run {run_dir.name} already has a report bundle: {ids}; "
                         "to issue a new one give --supersedes REPORT_ID")
    return existing


def _choose_out_dir(run_dir: Path, existing: list[Path]) -> Path:
    if not existing:
        return run_dir / DEFAULT_BUNDLE_NAME
    n = 2
    while (run_dir / f"{DEFAULT_BUNDLE_NAME}-{n}").exists():
        n += 1
    return run_dir / f"{DEFAULT_BUNDLE_NAME}-{n}"


def staging_dir(out_dir: Path) -> Path:
    """Create the hidden sibling a bundle is written in (exclusive, random name); it is renamed
    to ``out_dir`` only once complete."""
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))


def discard_staging(partial: Path) -> None:
    """Remove a staging directory after a failed or interrupted build (never half a bundle)."""
    shutil.rmtree(partial, ignore_errors=True)


def build_bundle(run_dir: Path, out_dir: Path | None = None, *, supersedes: str | None = None,
                 audit_log: Path | None = None) -> Path:
    """Build the report bundle of the run record in ``run_dir``; return the bundle directory.

    ``out_dir`` defaults to ``<run_dir>/report`` (``report-N`` for a reissue, which needs
    ``supersedes``: the report id it replaces). The build is logged to the audit log
    (``audit_log``, else $RIG_AUDIT_LOG, else ``<runs dir>/audit.jsonl``).
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    run_dir = record.run_dir
    if supersedes is not None and not supersedes.strip():
        raise UsageError("--supersedes must name the report id being replaced, not an empty string")
    existing = _require_supersedes(run_dir, supersedes)
    out_dir = Path(out_dir) if out_dir is not None else _choose_out_dir(run_dir, existing)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"bundle output {out_dir} already exists and is not an empty directory")
    run_id = str(record.started.get("run_id") or run_dir.name)
    report_id = f"RPT-{run_id}-{secrets.token_hex(4)}"
    created_at = utc_now()
    raw_src = run_dir / "raw"
    try:  # before anything is written: a planted symlink is refused, never followed
        raw_files = regular_files_under(raw_src) if raw_src.is_dir() and not raw_src.is_symlink() else []
        if raw_src.is_symlink():
            raise UnsafeFileError(errno.ELOOP, "raw is a symbolic link (not followed: a bundle takes only regular files)")
    except UnsafeFileError as exc:
        raise UsageError(f"run {run_dir}: {exc}") from None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = staging_dir(out_dir)
    try:
        known = {"record.jsonl": copy_and_hash(record.path, partial / "record.jsonl")}
        for src in raw_files:
            rel = src.relative_to(run_dir).as_posix()
            known[rel] = copy_and_hash(src, partial / rel)
        results = build_results(record, report_id=report_id, record_sha256=known["record.jsonl"][0])
        (partial / "results.json").write_bytes(canonical_json(results))
        generator = generator_info()
        info = {"created_at": created_at, "supersedes": supersedes, "generator": generator}
        plots, notes = build_plots(partial / "raw", results, salt=report_id)
        (partial / "report.html").write_bytes(render_report(results, info, plots, notes))
        (partial / "junit.xml").write_bytes(build_junit(results))
        manifest = build_manifest(
            partial, report_id=report_id, supersedes=supersedes, created_at=created_at, generator=generator,
            station=station_identity(record.started.get("station") or {}), run_id=run_id,
            verdict=results["verdict"]["outcome"], known=known, conditions=results["verdict"]["conditions"],
        )
        manifest_bytes = canonical_json(manifest)
        (partial / MANIFEST_NAME).write_bytes(manifest_bytes)
        os.chmod(partial, 0o755)  # mkdtemp makes it 0700; a bundle is meant to be shared
        if out_dir.exists():
            out_dir.rmdir()  # verified empty above
        os.replace(partial, out_dir)
    except BaseException:
        discard_staging(partial)
        raise
    audit.append_event(
        audit.resolve_log_path(audit_log, near=run_dir.parent), "report_built",
        report_id=report_id, run_id=run_id, verdict=results["verdict"]["outcome"], supersedes=supersedes,
        manifest_sha256=sha256_hex(manifest_bytes), bundle=str(out_dir.resolve()),
    )
    return out_dir


@dataclass
class SignatureFile:
    path: Path
    sequence: int
    role: str
    token: Path | None = None  # NN-role.tst: the time-stamp authority's token (reports.timestamp)


def load_manifest(bundle: Path) -> tuple[dict[str, Any], bytes]:
    """(manifest, its exact bytes); ValueError when missing or unreadable."""
    path = Path(bundle) / MANIFEST_NAME
    try:
        data = read_regular(path, max_bytes=MAX_MANIFEST_BYTES, what=MANIFEST_NAME)
    except FileNotFoundError:
        raise ValueError(f"{MANIFEST_NAME} is missing") from None
    except OSError as exc:
        raise ValueError(f"{MANIFEST_NAME} cannot be read: {exc.strerror or exc}") from None
    manifest = load_json_bytes(data, MANIFEST_NAME)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise ValueError(f"{MANIFEST_NAME} is not a bundle manifest (no file list)")
    return manifest, data


def signature_files(bundle: Path) -> tuple[list[SignatureFile], list[str]]:
    """Signature files in order, and problems (badly named or unexpected entries in signatures/)."""
    folder = Path(bundle) / SIGNATURES_DIR
    found: list[SignatureFile] = []
    problems: list[str] = []
    if not folder.exists():
        return found, problems
    if folder.is_symlink() or not folder.is_dir():
        return found, [f"{SIGNATURES_DIR}: not a directory"]
    tokens: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = SIGNATURE_FILE.match(path.name)
        token = TOKEN_FILE.match(path.name)
        if token and not path.is_symlink() and path.is_file():
            tokens[path.name.removesuffix(".tst")] = path
            continue
        if not match or path.is_symlink() or not path.is_file():
            problems.append(f"{SIGNATURES_DIR}/{path.name}: unexpected file (signatures are NN-role.dsse.json, "
                            "their time-stamp tokens NN-role.tst)")
            continue
        found.append(SignatureFile(path, int(match.group(1)), match.group(2)))
    for sig in found:
        sig.token = tokens.pop(sig.path.name.removesuffix(".dsse.json"), None)
    problems += [f"{SIGNATURES_DIR}/{t.name}: a time-stamp token without its signature" for t in tokens.values()]
    return found, problems


def require_bundle_dir(bundle: Path) -> Path:
    """A usage error (exit 2) unless ``bundle`` is a directory; names the bundle of a run dir."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise UsageError(f"no bundle directory at {bundle}")
    if not (bundle / MANIFEST_NAME).exists() and (bundle / "record.jsonl").is_file():
        hint = ", ".join(str(p) for p in _existing_bundles(bundle)) or f"none yet: rig report build {bundle}"
        raise UsageError(f"{bundle} is a run directory, not a report bundle (its bundles: {hint})")
    return bundle
