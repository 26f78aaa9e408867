"""`rig keys`, `rig report build|sign|verify|show` end to end through the CLI (real default KDF)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from reports.synthetic import write_record
from rig.cli.main import main

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("RIG_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.delenv("RIG_KEY_REGISTRY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells to the terminal width
    return {"root": tmp_path, "registry": tmp_path / "reg" / "registry.json", "keys": tmp_path / "private",
            "audit": tmp_path / "audit.jsonl"}


def rig(*argv: str) -> int:
    return main([str(a) for a in argv])


def test_keys_build_sign_verify_show(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    reg, keys = env["registry"], env["keys"]
    assert rig("keys", "new", "--id", "jdoe", "--name", "Jane Doe", "--roles", "performed_by",
               "--out", keys, "--registry", reg) == 0
    assert rig("keys", "new", "--id", "rroe", "--name", "Richard Roe", "--roles", "reviewed_by,approved_by",
               "--out", keys, "--registry", reg, "--valid-days", "30") == 0
    key_file = keys / "jdoe.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert json.loads(key_file.read_text())["kdf"]["log2_n"] >= 15  # the CLI always uses the strong KDF
    assert rig("keys", "list", "--registry", reg) == 0
    assert "Jane Doe" in capsys.readouterr().out

    run = write_record(env["root"] / "runs" / "r1", "PASS", duration_s=300.0)
    assert rig("report", "build", run) == 0
    bundle = run / "report"
    assert rig("report", "verify", bundle, "--registry", reg) == 1  # unsigned
    assert rig("report", "verify", bundle, "--registry", reg, "--allow-unsigned") == 0
    assert rig("report", "sign", bundle, "--role", "performed_by", "--key", key_file, "--registry", reg) == 0
    capsys.readouterr()
    assert rig("report", "sign", bundle, "--role", "reviewed_by", "--key", key_file, "--registry", reg) == 2
    assert "jdoe may not sign as reviewed_by" in capsys.readouterr().err
    assert rig("report", "sign", bundle, "--role", "reviewed_by", "--key", keys / "rroe.key", "--registry", reg,
               "--meaning", "Reviewed data and plots") == 0
    assert rig("report", "verify", bundle, "--registry", reg) == 0
    assert "VALID" in capsys.readouterr().out
    # the synthetic station's balance was due 2024-01-31: a PASS that is not valid for release (exit 4)
    assert rig("report", "show", bundle, "--registry", reg) == 4
    out = capsys.readouterr().out
    assert "Reviewed data and plots" in out and "flow.mean_error_pct" in out and "intact" in out
    assert "NOT VALID FOR RELEASE" in out and "balance calibration overdue since 2024-01-31" in out
    assert "SIMULATED" in out

    assert rig("keys", "revoke", "jdoe", "--reason", "test", "--at", "2020-06-01T00:00:00Z", "--registry", reg) == 0
    capsys.readouterr()
    assert rig("report", "verify", bundle, "--registry", reg, "--json") == 1
    result = json.loads(capsys.readouterr().out)
    assert not result["valid"] and any("revoked" in r for r in result["reasons"])
    assert rig("audit", "verify") == 0
    kinds = [json.loads(l)["kind"] for l in env["audit"].read_text().splitlines()]
    assert kinds == ["key_created", "key_created", "report_built", "signature", "signature", "key_revoked"]


def test_wrong_passphrase_and_usage_errors(env: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reg, keys = env["registry"], env["keys"]
    assert rig("keys", "new", "--id", "jdoe", "--name", "Jane Doe", "--roles", "performed_by",
               "--out", keys, "--registry", reg) == 0
    run = write_record(env["root"] / "runs" / "r1", "PASS", duration_s=300.0)
    assert rig("report", "build", run) == 0
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", "wrong wrong wrong")
    capsys.readouterr()
    assert rig("report", "sign", run / "report", "--role", "performed_by", "--key", keys / "jdoe.key",
               "--registry", reg) == 2
    err = capsys.readouterr().err
    assert "wrong passphrase" in err and "Traceback" not in err
    assert rig("keys", "new", "--id", "x", "--name", "X", "--roles", "signed_by", "--registry", reg) == 2
    assert "allowed: generated_by, performed_by, reviewed_by, approved_by" in capsys.readouterr().err
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", "short")
    assert rig("keys", "new", "--id", "x", "--name", "X", "--roles", "reviewed_by", "--out", keys, "--registry", reg) == 2
    assert "at least 12" in capsys.readouterr().err and not (keys / "x.key").exists()
    assert rig("report", "verify", env["root"] / "nope", "--registry", reg) == 2
    assert rig("report", "verify", run, "--registry", reg) == 2  # a run dir, not a bundle
    assert "is a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        rig("report", "sign", run / "report", "--role", "boss", "--key", keys / "jdoe.key")
    assert exc.value.code == 2
