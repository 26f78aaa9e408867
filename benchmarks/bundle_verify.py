"""Benchmark: `rig report verify` throughput on a bundle with 1 GB of raw data, and signing latency.

Why: bundles carry raw acquisition data; an auditor verifying a year of nightly bundles must not
wait on the verifier. Target: >= 500 MB/s verify throughput (page cache warm: the bundle was just
written; a cold read is bounded by the disk, not by this code), shown beside the same-run floor:
reading and hashing the same files with nothing else.

    python -m benchmarks.bundle_verify [--quick]      (quick: 100 MB instead of 1 GB)

Numbers reported: build (copy + hash) throughput, verify throughput (best and median of 3),
Ed25519/DSSE envelope signing latency, full `sign_bundle` latency (which re-verifies the whole
bundle before signing, so it scales with bundle size) and key unlock time with the default scrypt
cost (the deliberate part of signing latency).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.verdict import Figure, conclude
from reports.bundle import build_bundle
from reports.canonical import canonical_json
from reports.dsse import sign_envelope
from reports.keys import DEFAULT_SCRYPT_LOG2_N, generate_key_file, load_key_file
from reports.key_registry import Registry
from reports.signing import sign_bundle
from reports.synthetic import make_signer, write_record
from reports.verify import verify_bundle

FILE_BYTES = 128 << 20
TARGET_MB_S = 500.0


def _write_raw(raw_dir: Path, total_bytes: int) -> int:
    """Binary waveform files (DAQ high-rate capture) adding up to ``total_bytes``."""
    block = os.urandom(1 << 20)
    written, index = 0, 0
    while written < total_bytes:
        size = min(FILE_BYTES, total_bytes - written)
        with open(raw_dir / f"daq_waveform_{index:03d}.bin", "wb") as handle:
            for i in range(size >> 20):
                handle.write(i.to_bytes(8, "little") + block[8:])
        written += size
        index += 1
    return written


def _plain_hash_mb_s(bundle: Path) -> float:
    """The floor any verifier pays: read and SHA-256 every file of the bundle, nothing else."""
    total, t0 = 0, time.perf_counter()
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
    return total / (time.perf_counter() - t0) / 1e6


def run(quick: bool = False) -> dict:
    total = (100 if quick else 1000) << 20
    root = Path(tempfile.mkdtemp(prefix="rig-bench-bundle-"))
    try:
        run_dir = write_record(root / "runs" / "bench", "PASS", duration_s=600.0)
        raw_bytes = _write_raw(run_dir / "raw", total)
        audit_log = root / "audit.jsonl"
        t0 = time.perf_counter()
        bundle = build_bundle(run_dir, audit_log=audit_log)
        build_s = time.perf_counter() - t0

        registry = Registry(root / "keys" / "registry.json")
        performer = make_signer(registry, root / "keys", "jdoe", "Jane Doe", ["performed_by"])
        reviewer = make_signer(registry, root / "keys", "rroe", "Richard Roe", ["reviewed_by"])
        t0 = time.perf_counter()
        sign_bundle(bundle, performer, "performed_by", registry, audit_log=audit_log)
        sign_bundle_s = time.perf_counter() - t0
        sign_bundle(bundle, reviewer, "reviewed_by", registry, audit_log=audit_log)

        statement = canonical_json({"manifest_sha256": "0" * 64, "role": "performed_by", "signed_at": "x"})
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            sign_envelope(statement, performer.private_key, performer.key_id)
        envelope_ms = (time.perf_counter() - t0) / n * 1e3

        strong = generate_key_file(root / "strong.key", signer_id="s", printed_name="S", passphrase="x" * 16)
        t0 = time.perf_counter()
        load_key_file(root / "strong.key", "x" * 16)
        unlock_s = time.perf_counter() - t0
        assert strong.key_id

        rates, seconds = [], []
        for _ in range(3):
            check = verify_bundle(bundle, registry)
            if not check.ok:
                raise RuntimeError(f"benchmark bundle does not verify: {check.reasons()}")
            seconds.append(check.seconds)
            rates.append(check.bytes_hashed / check.seconds / 1e6)
        bundle_bytes = check.bytes_hashed
        hash_rates = [_plain_hash_mb_s(bundle) for _ in range(3)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "raw_mb": raw_bytes / 1e6,
        "bundle_mb": bundle_bytes / 1e6,
        "build_s": round(build_s, 3),
        "build_mb_s": round(bundle_bytes / 1e6 / build_s, 1),
        "verify_s_best": round(min(seconds), 3),
        "verify_mb_s_best": round(max(rates), 1),
        "verify_mb_s_median": round(statistics.median(rates), 1),
        "verify_target_mb_s": TARGET_MB_S,
        "plain_sha256_mb_s_best": round(max(hash_rates), 1),
        "verify_meets_target": max(rates) >= TARGET_MB_S,
        "envelope_sign_ms": round(envelope_ms, 4),
        "sign_bundle_s": round(sign_bundle_s, 3),
        "key_unlock_s_scrypt_2^%d" % DEFAULT_SCRYPT_LOG2_N: round(unlock_s, 3),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 MB of raw data instead of 1 GB")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print(json.dumps(result, indent=2))
    return conclude([
        Figure("verify throughput (best of 3)", result["verify_mb_s_best"], "MB/s", ">=", TARGET_MB_S,
               baseline=f"plain read + SHA-256 of the same bundle files, best of 3: "
                        f"{result['plain_sha256_mb_s_best']} MB/s"),
        Figure("verify / plain hashing throughput", round(result["verify_mb_s_best"] / result["plain_sha256_mb_s_best"], 3),
               "", ">=", 0.8, baseline="the plain read + SHA-256 figure above (what the verifier adds: parsing, "
                                     "manifest and signature checks)"),
    ])


if __name__ == "__main__":
    sys.exit(main())
