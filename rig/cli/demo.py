"""`make demo`: the whole chain a lab user sees, on the simulated bench, in about a minute.

Why a script of `rig` commands rather than library calls: the demo exercises exactly the commands
a technician and a reviewer type, so it doubles as a smoke test of the CLI.

Steps: rig check (starts the simulated bench itself) -> rig run delivery_check (virtual time; builds
the report bundle) -> rig keys new for a technician and a reviewer -> rig report sign (performed_by,
reviewed_by) -> rig report verify -> print where the bundle is.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys
from pathlib import Path

DEMO_PASSPHRASE = "demo-only passphrase, never for real keys"


def _rig(*args: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "rig", *args]
    print(f"\n$ rig {' '.join(args)}", flush=True)
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0:
        raise SystemExit(f"demo: `rig {args[0]}` exited {done.returncode}; see the output above")


def main() -> int:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path("demo-out") / stamp
    runs, keys = out / "runs", out / "keys"
    registry = keys / "registry.json"
    env = {**os.environ, "RIG_KEY_PASSPHRASE": DEMO_PASSPHRASE, "RIG_AUDIT_LOG": str(out / "audit.jsonl")}

    _rig("check", "--station", "rig.toml", env=env)
    _rig("run", "delivery_check", "--station", "rig.toml", "--out", str(runs),
         "--operator", "Demo Technician", "--answer", "setup=done",
         "--answer", "item_serial=NE1000-SIM-0001", "--plain", env=env)
    bundles = sorted(runs.glob("*/report"))
    if not bundles:
        raise SystemExit(f"demo: no report bundle was written under {runs}")
    bundle = bundles[-1]
    _rig("keys", "new", "--id", "demo.tech", "--name", "Demo Technician", "--roles", "performed_by",
         "--out", str(keys), "--registry", str(registry), env=env)
    _rig("keys", "new", "--id", "demo.reviewer", "--name", "Demo Reviewer", "--roles", "reviewed_by",
         "--out", str(keys), "--registry", str(registry), env=env)
    for role, signer in (("performed_by", "demo.tech"), ("reviewed_by", "demo.reviewer")):
        key_files = sorted(keys.glob(f"{signer}*.key")) or sorted(keys.glob(f"*{signer}*"))
        key_files = [k for k in key_files if k.name != registry.name]
        if not key_files:
            raise SystemExit(f"demo: no private key for {signer} in {keys}")
        _rig("report", "sign", str(bundle), "--role", role, "--key", str(key_files[0]),
             "--registry", str(registry), env=env)
    _rig("report", "verify", str(bundle), "--registry", str(registry), env=env)
    _rig("audit", "verify", str(out / "audit.jsonl"), "--bundle", str(bundle), env=env)  # anchors of the bundle
    print(f"\nSigned, verified report bundle: {bundle.resolve()}")
    print(f"Open {bundle.resolve() / 'report.html'} in a browser (works offline).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
