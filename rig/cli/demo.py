"""`make demo`: the whole chain a lab user sees, on the simulated bench, in about a minute.

Why a script of `rig` commands rather than library calls: the demo exercises exactly the commands
a technician, a key administrator and a reviewer type, so it doubles as a smoke test of the CLI.

Steps: a demo station file (a copy of rig.toml whose runs, audit trail and key registry live under
demo-out/) -> rig keys init-admin (the registry's administrator, pinned in the station file) ->
rig keys new for a technician (an enrolment request) -> rig keys approve (administrator) -> rig keys
new --admin-key for a reviewer (enrolled at once) -> rig check -> rig run delivery_check as the
technician (virtual time; builds the report bundle) -> rig report sign (performed_by by the
operator, reviewed_by) -> rig report verify -> rig audit verify -> print where the bundle is.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
from pathlib import Path

DEMO_PASSPHRASE = "demo-only passphrase, never for real keys"
DEMO_ADMIN_PASSPHRASE = "demo-only administrator passphrase"


def _rig(*args: str, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> None:
    cmd = [sys.executable, "-m", "rig", *args]
    print(f"\n$ rig {' '.join(args)}", flush=True)
    done = subprocess.run(cmd, env=env)
    if done.returncode not in ok:
        raise SystemExit(f"demo: `rig {args[0]}` exited {done.returncode}; see the output above")


def _station(shipped: Path, out: Path, admin_key_id: str | None) -> Path:
    """The shipped station, with its records, audit trail and registry under ``out``."""
    text = shipped.read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in ("runs_dir", "audit_log", "key_registry"):
            continue
        lines.append(line)
        if line.strip() == "[station]":
            lines += [f'runs_dir = "{out / "runs"}"', f'audit_log = "{out / "audit.jsonl"}"',
                      f'key_registry = "{out / "keys" / "registry.json"}"']
    if admin_key_id:
        lines += ["", "[signing]", f'admin_keys = ["{admin_key_id}"]']
    path = out / "rig.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> int:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = (Path("demo-out") / stamp).resolve()
    out.mkdir(parents=True)
    keys = out / "keys"
    registry = keys / "registry.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RIG_AUDIT_LOG", "RIG_KEY_REGISTRY", "RIG_STATION")}
    env.update(RIG_KEY_PASSPHRASE=DEMO_PASSPHRASE, RIG_ADMIN_PASSPHRASE=DEMO_ADMIN_PASSPHRASE)

    station = _station(Path("rig.toml"), out, None)
    _rig("keys", "init-admin", "--id", "demo.admin", "--name", "Demo Key Administrator", "--out", str(keys),
         "--station", str(station), env=env)
    admin_id = json.loads(registry.read_text(encoding="utf-8"))["admins"][0]["key_id"]
    station = _station(Path("rig.toml"), out, admin_id)
    admin = str(keys / "demo.admin.key")
    _rig("keys", "new", "--id", "demo.tech", "--name", "Demo Technician", "--roles", "performed_by",
         "--out", str(keys), "--station", str(station), env=env)
    _rig("keys", "approve", str(keys / "demo.tech.request.json"), "--admin-key", admin,
         "--station", str(station), env=env)
    _rig("keys", "new", "--id", "demo.reviewer", "--name", "Demo Reviewer", "--roles", "reviewed_by",
         "--out", str(keys), "--station", str(station), "--admin-key", admin, env=env)
    _rig("check", "--station", str(station), env=env)
    _rig("run", "delivery_check", "--station", str(station), "--operator", "Demo Technician",
         "--answer", "setup=done", "--answer", "item_serial=NE1000-SIM-0001", "--plain", env=env)
    bundles = sorted((out / "runs").glob("*/report"))
    if not bundles:
        raise SystemExit(f"demo: no report bundle was written under {out / 'runs'}")
    bundle = bundles[-1]
    for role, signer in (("performed_by", "demo.tech"), ("reviewed_by", "demo.reviewer")):
        _rig("report", "sign", str(bundle), "--role", role, "--key", str(keys / f"{signer}.key"),
             "--station", str(station), env=env)
    _rig("report", "verify", str(bundle), "--station", str(station), env=env)
    _rig("audit", "verify", "--station", str(station), "--bundle", str(bundle), env=env)  # anchors of the bundle
    print(f"\nSigned, verified report bundle (SIMULATED data: never valid for release): {bundle}")
    print(f"Open {bundle / 'report.html'} in a browser (works offline).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
