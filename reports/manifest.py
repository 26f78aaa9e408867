"""manifest.json: what a bundle contains, with the sha256 and size of every file.

Why hash everything, fast: the manifest's own sha256 is what signatures sign, so one signature
covers every byte of the bundle. Bundles carry raw acquisition data (hundreds of MB), so hashing
reads in large chunks into one reused buffer and runs files in parallel threads (hashlib releases
the GIL on large updates).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reports.html import SIGNATURE_BLOCK_VERSION, split_signature_block
from rig.safeio import open_regular, read_regular

MANIFEST_NAME = "manifest.json"
SIGNATURES_DIR = "signatures"
REPORT_HTML = "report.html"
HTML_HASH_SCOPE = "without-signature-block"
CHUNK_BYTES = 8 << 20
MANIFEST_SCHEMA = "rig.report-manifest/1"
# Files read whole into memory are bounded (a 420 MB page took 1.7 GB to verify); raw data is
# streamed in CHUNK_BYTES and not bounded.
MAX_HTML_BYTES = 64 << 20
MAX_MANIFEST_BYTES = 16 << 20
MAX_RESULTS_BYTES = 64 << 20
MAX_ENVELOPE_BYTES = 1 << 20


def hash_stream(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in CHUNK_BYTES pieces."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    size = 0
    with open_regular(path) as handle:  # never through a symlink
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


def copy_and_hash(src: Path, dst: Path) -> tuple[str, int]:
    """Copy src to dst and hash the bytes written, in one pass."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open_regular(src) as fin, open(dst, "xb") as fout:
        while True:
            n = fin.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            fout.write(view[:n])
            size += n
    return digest.hexdigest(), size


def html_scope_bytes(page: bytes) -> bytes:
    """report.html as hashed: with the signatures block emptied (see reports.html)."""
    return split_signature_block(page)[0]


def hash_entry(bundle: Path, rel: str) -> tuple[str, int]:
    """(sha256, size) of a bundle file in its manifest hash scope."""
    path = bundle / rel
    if rel == REPORT_HTML:
        data = html_scope_bytes(read_regular(path, max_bytes=MAX_HTML_BYTES, what=rel))
        return hashlib.sha256(data).hexdigest(), len(data)
    return hash_stream(path)


def hash_many(bundle: Path, rels: list[str], workers: int | None = None) -> dict[str, tuple[str, int] | Exception]:
    """Hash files in parallel; a file that cannot be read maps to its exception."""

    def one(rel: str) -> tuple[str, int] | Exception:
        try:
            return hash_entry(bundle, rel)
        except (OSError, ValueError) as exc:
            return exc

    workers = workers or min(4, (os.cpu_count() or 1) + 1)
    # Largest first: with few big raw files the pool stays busy until the end.
    ordered = sorted(rels, key=lambda r: -_size_or_zero(bundle / r))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip(ordered, pool.map(one, ordered)))


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def list_payload(bundle: Path) -> tuple[list[str], list[str]]:
    """(payload files, problems): every regular file except manifest.json and signatures/, as
    sorted POSIX paths. Symlinks and special files are problems: they could point outside."""
    files: list[str] = []
    problems: list[str] = []
    for root, dirs, names in os.walk(bundle):
        root_path = Path(root)
        for d in list(dirs):
            if (root_path / d).is_symlink():
                problems.append(f"{(root_path / d).relative_to(bundle).as_posix()}: symbolic link not allowed in a bundle")
                dirs.remove(d)
        for name in names:
            path = root_path / name
            rel = path.relative_to(bundle).as_posix()
            if rel == MANIFEST_NAME or rel.startswith(SIGNATURES_DIR + "/"):
                continue
            if path.is_symlink() or not path.is_file():
                problems.append(f"{rel}: not a regular file")
                continue
            files.append(rel)
    return sorted(files), problems


def build_manifest(
    bundle: Path, *, report_id: str, supersedes: str | None, created_at: str, generator: dict[str, Any],
    station: dict[str, Any], run_id: str, verdict: str, known: dict[str, tuple[str, int]] | None = None,
    conditions: list[str] | None = None,
) -> dict[str, Any]:
    """The manifest of ``bundle`` (everything already written except manifest and signatures).

    ``known`` holds hashes computed while copying, so large raw files are not read twice.
    """
    rels, problems = list_payload(bundle)
    if problems:
        raise ValueError("; ".join(problems))
    known = dict(known or {})
    missing = [r for r in rels if r not in known]
    for rel, result in hash_many(bundle, missing).items():
        if isinstance(result, Exception):
            raise result
        known[rel] = result
    files = []
    for rel in rels:
        sha, size = known[rel]
        entry: dict[str, Any] = {"path": rel, "sha256": sha, "size": size}
        if rel == REPORT_HTML:
            entry["hash_scope"] = HTML_HASH_SCOPE
        files.append(entry)
    return {
        "schema": MANIFEST_SCHEMA,
        "schema_version": 1,
        "report_id": report_id,
        "supersedes": supersedes,
        "created_at": created_at,
        "generator": generator,
        "station": station,
        "run_id": run_id,
        "verdict": verdict,
        "conditions": list(conditions or []),
        "simulated": bool(station.get("simulated", True)),
        "signature_block_version": SIGNATURE_BLOCK_VERSION,
        "files": files,
    }
