"""Issue 17, identity bound: the nightly's recorded operator is checked as `rig run --operator` is.

The suite's ``operator`` (or its default: the station key's printed name, "nightly (unattended)"
for --unsigned) must be one of the station's known operators when it names any ([operators]
names, key registry signers), never empty, never control characters; otherwise `rig nightly`
refuses before anything runs (exit 2, one line naming the field and the known operators).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.key_registry import Registry
from reports.synthetic import make_signer
from tests.cli import run_rig

PASSPHRASE = "correct horse battery staple"
ENTRY = ('\n[[run]]\nprocedure = "delivery_check"\nparams = { duration_min = 6, sample_interval_s = 60, settle_s = 5 }\n'
         'answers = { item_serial = "NE1000-SIM-0001", setup = "done" }\n')


def suite(tmp_path: Path, operator: str | None) -> Path:
    line = "" if operator is None else f"operator = {json.dumps(operator)}\n"
    path = tmp_path / "suite.toml"
    path.write_text(f'[suite]\nname = "op-test"\nbudget_min = 10\n{line}{ENTRY}', encoding="utf-8")
    return path


def nightly(tmp_path: Path, station: Path, operator: str | None, *extra: str, env: dict | None = None):
    return run_rig("nightly", "--station", str(station), "--suite", str(suite(tmp_path, operator)),
                   "--out", str(tmp_path / "out"), *extra, env=env)


@pytest.mark.parametrize("operator, message", [
    ("Mallory", "suite op-test: operator 'Mallory' is not a known operator of station SIM-BENCH-01; known: A. Tech"),
    ("", "suite op-test: operator is empty"),
    ("A. Tech\u202e", "contains U+202E (RIGHT-TO-LEFT OVERRIDE)"),  # the suite loader's own check
    (None, "'nightly (unattended)' is not a known operator"),  # --unsigned default, station names operators
])
def test_an_unknown_or_bad_operator_is_refused_before_anything_runs(
        tmp_path: Path, station_file, operator: str | None, message: str) -> None:
    station = station_file(set={"operators.names": ["A. Tech"]})
    done = nightly(tmp_path, station, operator, "--unsigned")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "out").exists()


def _recorded_operator(out: Path) -> str:
    record = next(out.rglob("record.jsonl"))
    return json.loads(record.read_text().splitlines()[0])["operator"]


def test_a_known_operator_is_recorded(tmp_path: Path, station_file) -> None:
    station = station_file(set={"operators.names": ["A. Tech"]})
    done = nightly(tmp_path, station, "A. Tech", "--unsigned")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _recorded_operator(tmp_path / "out") == "A. Tech"


def test_the_default_operator_is_the_station_key_that_signs(tmp_path: Path, station_file) -> None:
    """No suite operator at a station whose registry has signers: the station key's printed name
    (a registry signer, so known) is recorded, and the bundles verify with it."""
    registry = Registry(tmp_path / "keys" / "registry.json")
    make_signer(registry, tmp_path / "keys", "station-01", "Station SIM-BENCH-01", ["generated_by"])
    station = station_file(set={"station.key_registry": str(registry.path), "signing.admin_keys": list(registry.pinned),
                                "station.audit_log": str(tmp_path / "audit.jsonl")})
    env = {"RIG_STATION_KEY": str(tmp_path / "keys" / "station-01.key"), "RIG_KEY_PASSPHRASE": PASSPHRASE}
    done = nightly(tmp_path, station, None, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _recorded_operator(tmp_path / "out") == "Station SIM-BENCH-01"
    (tmp_path / "again").mkdir()
    refused = nightly(tmp_path / "again", station, "nightly (unattended)", env=env)
    assert refused.returncode == 2 and "not a known operator" in refused.stderr
