"""Synthetic run records, written with the real RecordWriter, for the report pipeline's tests,
benchmark and demos when no bench ran.

Why here and not in tests/: the benchmark needs the same realistic records (station snapshot as
rig.station.bench.Bench.snapshot writes it, balance and DAQ raw files, trumpet measurements, fault and
alarm events) and must not import from the test tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rig.record import RecordWriter

if TYPE_CHECKING:
    from reports.keys import SigningKey
    from reports.key_registry import Registry

OUTCOMES = ("PASS", "FAIL", "ABORTED", "ERROR", "INCOMPLETE")
TRUMPET_WINDOWS_MIN = (2, 5, 11, 19, 31)


def station_snapshot(calibration_due: str = "2027-06-30") -> dict:
    def instrument(name: str, kind: str, driver: str, serial: str, model: str, due: str) -> dict:
        return {"name": name, "kind": kind, "driver": driver, "resource": "sim", "resolved_resource": None,
                "serial": serial, "identity": {"model": model, "serial": serial, "firmware": "1.0"},
                "serial_mismatch": False, "calibration_due": due, "calibration_overdue": False}

    return {
        "station": {"id": "SIM-BENCH-01", "name": "Simulated bench", "location": "virtual lab",
                    "mode": "sim", "clock": "virtual", "calibration_policy": "warn", "path": "rig.toml"},
        "fluid": {"name": "water, 20 °C", "density_g_ml": 0.998},
        "safety": {"max_line_pressure_kpa": 120.0},
        "instruments": {
            "pump": instrument("pump", "syringe_pump", "ne1000", "NE1000-SIM-0001", "NE-1000", calibration_due),
            "balance": instrument("balance", "balance", "mt_sics", "B123456789", "XPR205", "2024-01-31"),
            "daq": instrument("daq", "daq", "nidaqmx", "01ABCDEF", "USB-6009", calibration_due),
        },
    }


def write_record(run_dir: Path, outcome: str = "PASS", *, duration_s: float = 1200.0, rate_ml_h: float = 1.0,
                 daq_rate_hz: float = 10.0, seed: int = 1, run_id: str | None = None) -> Path:
    """A flow-accuracy-like record ending in ``outcome`` (INCOMPLETE = no run_finished)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r}; allowed: {', '.join(OUTCOMES)}")
    rng = np.random.default_rng(seed)
    run_dir = Path(run_dir)
    writer = RecordWriter(run_dir)
    writer.append(
        "run_started", run_id=run_id or run_dir.name, t_utc="2026-01-10T09:00:00.000000Z",
        station=station_snapshot(), software={"version": "0.1.0", "git_sha": "0" * 40}, operator="Jane Doe",
        procedure={"id": "flow_accuracy", "version": "1.0.0", "requirements": ["REQ-FLOW-001", "REQ-FLOW-002"],
                   "source_sha256": "a" * 64, "spec_sha256": "b" * 64, "spec_version": "2026.1"},
        parameters={"rate_ml_h": {"value": rate_ml_h, "unit": "mL/h"},
                    "sample_interval_min": {"value": 0.5, "unit": "min"},
                    "density_g_ml": {"value": 0.998, "unit": "g/mL"}},
        item_under_test={"model": "IT-PUMP-2", "serial": "SN-0042", "firmware": "3.1.4"},
    )
    writer.append("step_started", step="prime", index=0, t_utc="2026-01-10T09:00:01.000000Z", t_proc_s=0.0)
    writer.append("operator_entry", step="prime", prompt="Fluid lot", answer="LOT-77", answered_by="jdoe",
                  t_utc="2026-01-10T09:00:05.000000Z")
    writer.append("step_finished", step="prime", index=0, status="done", t_utc="2026-01-10T09:01:00.000000Z", t_proc_s=60.0)
    writer.checkpoint()

    t_fault = duration_s * 0.75
    t_daq = np.arange(0.0, duration_s, 1.0 / daq_rate_hz)
    occluded = t_daq >= t_fault
    up = 4.0 + 0.2 * rng.standard_normal(len(t_daq)) + np.where(occluded, (t_daq - t_fault) * 0.5, 0.0)
    down = 2.0 + 0.2 * rng.standard_normal(len(t_daq))
    flow_ul_min = np.where(occluded, 0.0, rate_ml_h / 0.06) + 0.3 * rng.standard_normal(len(t_daq))
    np.savetxt(run_dir / "raw" / "daq.csv", np.column_stack([t_daq, up, down, flow_ul_min]), delimiter=",",
               header="t_s,pressure_upstream_kpa,pressure_downstream_kpa,flow_ul_min", comments="", fmt="%.4f")
    t_bal = np.arange(0.0, duration_s, 1.0)
    mass = np.minimum(t_bal, t_fault) * rate_ml_h * 0.998 / 3600.0 + 0.0002 * rng.standard_normal(len(t_bal))
    np.savetxt(run_dir / "raw" / "balance.csv", np.column_stack([t_bal, mass]), delimiter=",",
               header="t_s,mass_g", comments="", fmt="%.5f")
    (run_dir / "raw" / "pump.csv").write_text(f"t_s,rate_ml_h\n0,{rate_ml_h}\n{t_fault:.1f},{rate_ml_h}\n")

    writer.append("step_started", step="measure", index=1, t_utc="2026-01-10T09:01:00.000000Z", t_proc_s=60.0)
    writer.append("event", kind="fault_injected", t_proc_s=t_fault, detail={"fault": "occlusion"})
    writer.append("event", kind="detector", t_proc_s=t_fault + 40.0, detail={"detector": "pressure_trend"})
    writer.append("event", kind="alarm", t_proc_s=t_fault + 90.0, detail="pump alarm A?S")
    mean_error = 7.2 if outcome == "FAIL" else 0.5
    writer.append("measurement", name="flow.mean_error_pct", value=mean_error, unit="%", low=-5.0, high=5.0,
                  requirement="REQ-FLOW-001", outcome="pass" if abs(mean_error) <= 5 else "fail",
                  uncertainty={"expanded": 0.8, "k": 2}, decision_rule="simple acceptance (ILAC-G8 §4.2.1)",
                  t_proc_s=duration_s * 0.7)
    if outcome == "INCOMPLETE":
        writer.close()  # killed mid-run: no step_finished, no safe_state, no run_finished
        return run_dir
    for i, window in enumerate(TRUMPET_WINDOWS_MIN):
        spread = 6.0 / (1 + i)
        for kind, sign in (("max", 1), ("min", -1)):
            writer.append("measurement", name=f"flow.trumpet.P{window}.ep_{kind}", value=round(sign * spread, 3),
                          unit="%", low=None if kind == "max" else -10.0, high=10.0 if kind == "max" else None,
                          requirement="REQ-FLOW-002", outcome="pass", uncertainty=None,
                          decision_rule="simple acceptance", t_proc_s=duration_s * 0.7)
    writer.append("measurement", name="occlusion.time_to_alarm_s", value=90.0, unit="s", low=None, high=600.0,
                  requirement="REQ-OCC-001", outcome="pass", uncertainty=1.0, decision_rule=None, t_proc_s=t_fault + 90)
    status = {"PASS": "done", "FAIL": "done", "ABORTED": "aborted", "ERROR": "error"}[outcome]
    writer.append("step_finished", step="measure", index=1, status=status, t_utc="2026-01-10T09:21:00.000000Z",
                  t_proc_s=duration_s)
    writer.append("safe_state", confirmed=True, instruments={"pump": {"running": False}}, t_utc="2026-01-10T09:21:01.000000Z")
    reason = {"PASS": "all measurements within limits", "FAIL": "flow.mean_error_pct outside limits",
              "ABORTED": "operator pressed Ctrl-C", "ERROR": "balance timeout"}[outcome]
    writer.append("run_finished", outcome=outcome, reason=reason, t_utc="2026-01-10T09:21:02.000000Z")
    writer.close()
    return run_dir


def make_admin(registry: "Registry", key_dir: Path, *, passphrase: str = "correct horse battery staple",
               scrypt_log2_n: int = 10, added_at: str = "2020-01-01T00:00:00Z") -> "SigningKey":
    """An administrator key for ``registry``, pinned in memory (as a station file would pin it) and
    kept unlocked in ``registry.admin_signer`` so make_signer can enrol keys."""
    from reports.dsse import b64
    from reports.keys import generate_key_file, public_raw
    from reports.key_registry import AdminEntry

    key = generate_key_file(Path(key_dir) / "registry-admin.key", signer_id="registry-admin",
                            printed_name="Registry Administrator", passphrase=passphrase, scrypt_log2_n=scrypt_log2_n)
    registry.add_admin(AdminEntry(key.key_id, key.signer_id, key.printed_name, b64(public_raw(key.public_key)), added_at))
    registry.pinned = (*registry.pinned, key.key_id)
    registry.admin_signer = key
    registry.sign_document(key, added_at)
    registry.save()
    return key


def make_signer(registry: "Registry", key_dir: Path, signer_id: str, printed_name: str, roles: list[str], *,
                passphrase: str = "correct horse battery staple", valid_from: str = "2020-01-01T00:00:00Z",
                valid_until: str | None = None, scrypt_log2_n: int = 10) -> "SigningKey":
    """A key file plus its registry entry, endorsed by the registry's administrator (created by
    make_admin on first use) and saved. Enrolled at ``valid_from``. Low scrypt cost by default:
    tests and benchmarks create many keys; `rig keys new` always uses the strong default."""
    from reports.dsse import b64
    from reports.keys import generate_key_file, public_raw
    from reports.key_registry import KeyEntry

    admin = registry.admin_signer or make_admin(registry, key_dir, passphrase=passphrase, scrypt_log2_n=scrypt_log2_n)
    key = generate_key_file(Path(key_dir) / f"{signer_id}.key", signer_id=signer_id, printed_name=printed_name,
                            passphrase=passphrase, scrypt_log2_n=scrypt_log2_n)
    entry = KeyEntry(key.key_id, signer_id, printed_name, b64(public_raw(key.public_key)), list(roles),
                     valid_from, valid_until, valid_from)
    registry.add(entry)
    registry.endorse(entry, admin, valid_from)
    registry.sign_document(admin, valid_from)
    registry.save()
    return key
