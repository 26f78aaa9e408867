"""`rig keys`, `rig report build|sign|verify|show` end to end through the CLI (real default KDF)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from reports.synthetic import write_record
from rig.cli.main import main

PASSPHRASE = "correct horse battery staple"
ADMIN_PASSPHRASE = "administrator passphrase, long enough"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, station_writer: Any) -> dict[str, Any]:
    """A registry started by an administrator whose key id the station file pins; the station file
    names the registry and the audit trail, and every command finds them through --station."""
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("RIG_ADMIN_PASSPHRASE", ADMIN_PASSPHRASE)
    for var in ("RIG_AUDIT_LOG", "RIG_KEY_REGISTRY", "RIG_STATION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells to the terminal width
    reg, keys, audit = tmp_path / "reg" / "registry.json", tmp_path / "private", tmp_path / "audit.jsonl"
    bare = station_writer(tmp_path, name="bare.toml", set={"station.key_registry": str(reg),
                                                           "station.audit_log": str(audit)})
    assert rig("keys", "init-admin", "--id", "qa-admin", "--name", "Q. Admin", "--out", keys, "--station", bare) == 0
    admin_id = json.loads(reg.read_text())["admins"][0]["key_id"]
    station = station_writer(tmp_path, set={"station.key_registry": str(reg), "station.audit_log": str(audit),
                                            "signing.admin_keys": [admin_id]})
    return {"root": tmp_path, "registry": reg, "keys": keys, "audit": audit, "station": station, "bare": bare,
            "admin": keys / "qa-admin.key", "admin_id": admin_id}


def rig(*argv: Any) -> int:
    return main([str(a) for a in argv])


def enrol(env: dict[str, Any], signer: str, name: str, roles: str) -> Path:
    """`rig keys new` (an enrolment request only) then `rig keys approve` by the administrator."""
    assert rig("keys", "new", "--id", signer, "--name", name, "--roles", roles, "--out", env["keys"],
               "--station", env["station"]) == 0
    assert rig("keys", "approve", env["keys"] / f"{signer}.request.json", "--admin-key", env["admin"],
               "--station", env["station"]) == 0
    return env["keys"] / f"{signer}.key"


def test_keys_build_sign_verify_show(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    st, keys = env["station"], env["keys"]
    jdoe = enrol(env, "jdoe", "Jane Doe", "performed_by")
    rroe = enrol(env, "rroe", "Richard Roe", "reviewed_by,approved_by")
    assert stat.S_IMODE(os.stat(jdoe).st_mode) == 0o600
    assert json.loads(jdoe.read_text())["kdf"]["log2_n"] >= 15  # the CLI always uses the strong KDF
    assert rig("keys", "list", "--station", st) == 0
    out = capsys.readouterr().out
    assert "Jane Doe" in out and "pinned by the station" in out and "NOT TRUSTED" not in out

    run = write_record(env["root"] / "runs" / "r1", "PASS", duration_s=300.0)
    assert rig("report", "build", run, "--audit-log", env["audit"]) == 0
    bundle = run / "report"
    assert rig("report", "verify", bundle, "--station", st) == 1  # unsigned
    assert rig("report", "verify", bundle, "--station", st, "--allow-unsigned") == 0
    assert rig("report", "sign", bundle, "--role", "performed_by", "--key", jdoe, "--station", st) == 0
    capsys.readouterr()
    assert rig("report", "sign", bundle, "--role", "reviewed_by", "--key", jdoe, "--station", st) == 2
    assert "jdoe may not sign as reviewed_by" in capsys.readouterr().err
    assert rig("report", "sign", bundle, "--role", "reviewed_by", "--key", rroe, "--station", st,
               "--meaning", "Reviewed data and plots") == 0
    capsys.readouterr()
    assert rig("report", "sign", bundle, "--role", "approved_by", "--key", rroe, "--station", st) == 2
    assert "rroe already signed this bundle as reviewed_by; a signer holds one role per bundle" in capsys.readouterr().err
    assert rig("report", "verify", bundle, "--station", st) == 0
    out = capsys.readouterr().out
    assert f"run {run.name}" in out and "#01 performed_by: Jane Doe" in out and "— valid" in out
    data = (rig("report", "verify", bundle, "--station", st, "--json"), json.loads(capsys.readouterr().out))[1]
    assert data["valid"] and data["run_id"] == run.name
    assert [(s["role"], s["status"]) for s in data["signatures"]] == [("performed_by", "valid"), ("reviewed_by", "valid")]
    # the synthetic station's balance was due 2024-01-31: a PASS that is not valid for release (exit 4)
    assert rig("report", "show", bundle, "--station", st) == 4
    out = capsys.readouterr().out
    assert "Reviewed data and plots" in out and "flow.mean_error_pct" in out and "intact" in out
    assert "NOT VALID FOR RELEASE" in out and "balance calibration overdue since 2024-01-31" in out
    assert "SIMULATED" in out

    # tampered: the bundle is INVALID and its signatures are "not checked", never "valid"
    (bundle / "raw" / "pump.csv").write_text("t_s,rate_ml_h\n0,9\n")
    assert rig("report", "verify", bundle, "--station", st, "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in data["signatures"]] == ["not checked: bundle invalid"] * 2
    assert rig("report", "show", bundle, "--station", st) == 5
    capsys.readouterr()

    assert rig("keys", "revoke", "jdoe", "--reason", "test", "--at", "2020-06-01T00:00:00Z", "--station", st) == 2
    assert "needs an administrator" in capsys.readouterr().err
    assert rig("keys", "revoke", "jdoe", "--reason", "test", "--at", "2020-06-01T00:00:00Z", "--station", st,
               "--admin-key", env["admin"]) == 0
    assert rig("audit", "verify", "--station", st) == 0
    kinds = [json.loads(line)["kind"] for line in env["audit"].read_text().splitlines()]
    assert kinds == ["registry_created", "enrolment_requested", "key_enrolled", "enrolment_requested",
                     "key_enrolled", "report_built", "signature", "signature", "key_revoked"]


def test_root_of_trust_rejects_unauthorised_entries(env: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    st = env["station"]
    jdoe = enrol(env, "jdoe", "Jane Doe", "performed_by")
    # Someone without the administrator key: `rig keys new` only writes a request; the key cannot sign.
    assert rig("keys", "new", "--id", "mallory", "--name", "Q. Reviewer", "--roles", "reviewed_by",
               "--out", env["keys"], "--station", st) == 0
    assert (env["keys"] / "mallory.request.json").is_file()
    run = write_record(env["root"] / "runs" / "r1", "PASS", duration_s=300.0)
    assert rig("report", "build", run, "--audit-log", env["audit"]) == 0
    bundle = run / "report"
    assert rig("report", "sign", bundle, "--role", "performed_by", "--key", jdoe, "--station", st) == 0
    capsys.readouterr()
    assert rig("report", "sign", bundle, "--role", "reviewed_by", "--key", env["keys"] / "mallory.key",
               "--station", st) == 2
    assert "is not in the key registry" in capsys.readouterr().err
    # a duplicate printed name is refused at enrolment
    assert rig("keys", "new", "--id", "jdoe2", "--name", "Jane Doe", "--roles", "reviewed_by",
               "--out", env["keys"], "--station", st, "--admin-key", env["admin"]) == 2
    assert "already registered to another signer" in capsys.readouterr().err

    # A foreign administrator enrols a "Q. Reviewer" in its own registry; the entry is pasted into ours,
    # and that reviewer signs (the library refusal bypassed, as a forger would).
    from dataclasses import asdict

    from reports.key_registry import KeyEntry, Registry
    from reports.signing import sign_bundle
    from reports.synthetic import make_signer

    foreign = Registry(tmp_path / "foreign" / "registry.json")
    forged_key = make_signer(foreign, tmp_path / "fk", "qrev-x", "Q. Reviewer", ["reviewed_by"])
    foreign_id = foreign.admins[0].key_id
    ours = json.loads(env["registry"].read_text())
    pristine = json.dumps(ours)
    ours["keys"].append(json.loads((tmp_path / "foreign" / "registry.json").read_text())["keys"][0])
    env["registry"].write_text(json.dumps(ours))
    capsys.readouterr()
    assert rig("report", "verify", bundle, "--station", st) == 1
    assert "was edited after the administrator signed it" in capsys.readouterr().out
    lenient = Registry.load(env["registry"], pinned=(env["admin_id"],))
    lenient.trust_problems = lambda: []  # type: ignore[method-assign]
    lenient.entry_problem = lambda entry, when=None: None  # type: ignore[method-assign]
    sign_bundle(bundle, forged_key, "reviewed_by", lenient, audit_log=env["audit"])
    assert rig("report", "verify", bundle, "--station", st, "--json") == 1
    data = json.loads(capsys.readouterr().out)
    reasons = "\n".join(data["reasons"])
    assert f"is signed by {foreign_id}, a foreign key (not a pinned administrator)" in reasons
    assert "registry entry of qrev-x" in reasons and "was edited after the administrator signed it" in reasons
    assert [s["status"] for s in data["signatures"]] == ["not checked: bundle invalid", "invalid"]
    # an unsigned entry, an edited entry, a duplicate printed name
    edited = json.loads(pristine)
    edited["keys"][0]["roles"] = ["performed_by", "approved_by"]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from reports.dsse import b64
    from reports.keys import key_id_of, public_raw

    ghost = Ed25519PrivateKey.generate().public_key()
    edited["keys"].append({**edited["keys"][0], "key_id": key_id_of(ghost), "public_key": b64(public_raw(ghost)),
                           "signer_id": "ghost", "printed_name": "G. Host", "endorsement": None})
    env["registry"].write_text(json.dumps(edited))
    assert rig("keys", "list", "--station", st) == 0
    out = capsys.readouterr().out
    assert "registry entry of ghost (ed25519:" in out and "is not signed by an administrator" in out
    assert "registry entry of jdoe" in out and "edited after the administrator signed it" in out
    env["registry"].write_text(pristine)
    twin = Registry.load(env["registry"], pinned=(env["admin_id"],))
    twin.keys.append(KeyEntry(**{**asdict(twin.keys[0]), "signer_id": "ghost", "key_id": key_id_of(ghost)}))
    assert "printed name 'Jane Doe' is registered to another signer too (ghost)" in (
        twin.entry_problem(twin.keys[0]) or "")
    # without the pin (no [signing] in the station file) nothing is trusted
    assert rig("report", "verify", bundle, "--registry", env["registry"], "--station", env["bare"]) == 1
    assert "no administrator key is pinned" in capsys.readouterr().out


def test_performed_by_must_be_the_recorded_operator(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    solo = enrol(env, "solo", "S. Olo", "performed_by")
    run = write_record(env["root"] / "runs" / "r1", "PASS", duration_s=300.0)  # operated by Jane Doe
    assert rig("report", "build", run, "--audit-log", env["audit"]) == 0
    capsys.readouterr()
    assert rig("report", "sign", run / "report", "--role", "performed_by", "--key", solo, "--station", env["station"]) == 2
    assert ("performed_by is signed by S. Olo but the run was operated by Jane Doe; only the recorded operator "
            "may sign performed_by") in capsys.readouterr().err


def test_wrong_passphrase_and_usage_errors(env: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reg, keys = env["station"], env["keys"]
    enrol(env, "jdoe", "Jane Doe", "performed_by")
    run = write_record(env["root"] / "runs" / "r1", "PASS", duration_s=300.0)
    assert rig("report", "build", run, "--audit-log", env["audit"]) == 0
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", "wrong wrong wrong")
    capsys.readouterr()
    assert rig("report", "sign", run / "report", "--role", "performed_by", "--key", keys / "jdoe.key",
               "--station", reg) == 2
    err = capsys.readouterr().err
    assert "wrong passphrase" in err and "Traceback" not in err
    assert rig("keys", "new", "--id", "x", "--name", "X", "--roles", "signed_by", "--station", reg) == 2
    assert "allowed: generated_by, performed_by, reviewed_by, approved_by" in capsys.readouterr().err
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", "short")
    assert rig("keys", "new", "--id", "x", "--name", "X", "--roles", "reviewed_by", "--out", keys, "--station", reg) == 2
    assert "at least 12" in capsys.readouterr().err and not (keys / "x.key").exists()
    assert rig("report", "verify", env["root"] / "nope", "--station", reg) == 2
    assert rig("report", "verify", run, "--station", reg) == 2  # a run dir, not a bundle
    assert "is a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        rig("report", "sign", run / "report", "--role", "boss", "--key", keys / "jdoe.key")
    assert exc.value.code == 2


def test_nothing_is_written_into_the_current_directory(env: dict[str, Any], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Registry, audit trail and runs come from the station file; the working directory stays empty."""
    run = write_record(env["root"] / "runs" / "r1", "PASS", duration_s=300.0)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RIG_STATION", str(env["station"]))
    assert rig("report", "build", run) == 0  # audit: the trail of the station that made the run, or the env
    assert rig("report", "verify", run / "report", "--allow-unsigned") == 0
    assert rig("keys", "list") == 0
    assert rig("audit", "verify") == 0  # the station's trail by default
    assert "registry_created" in env["audit"].read_text()
    assert list(work.iterdir()) == []
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert {"runs/", "keys/", "audit.jsonl", "demo-out/"} <= set(ignored)
