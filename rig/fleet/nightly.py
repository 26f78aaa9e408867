"""The nightly suite runner: every procedure of a suite, unattended, one after the other.

Why it is built like this:
- **One bench, reopened after trouble.** The bench (and in sim mode the simulated bench process)
  is opened once for the suite. Every run ends in the runner's safe state, read back; if that was
  not confirmed, or the run ended in ERROR, the bench is closed and reopened before the next
  procedure, so one instrument hiccup does not poison the rest of the night.
- **Nothing stops the others.** A FAIL, an ERROR, a procedure bug, a report that cannot be built:
  each is recorded for its own entry and the suite goes on.
- **A wall-clock budget.** A timer requests an ERROR abort of the running procedure when the
  budget is spent (the runner then safe-states the bench as for any abort); the entries after it
  are recorded as not run (ERROR). SIGTERM/SIGINT (a cancelled CI job) abort the same way, with
  ABORTED. A hang-up (SIGHUP) does not: the suite goes on detached, logging to nightly.log.
- **Signed, verified, filed.** Each run's bundle is built, signed by the station key as
  ``generated_by``, verified with the reports verify API, and filed in the history database. A
  failure there does not change the run's outcome but makes the nightly exit 3: an unsigned or
  unfiled result needs a person's attention.

Exit code (``NightlyResult.exit_code``): 0 every entry PASS; 1 any FAIL and nothing worse; 3 any
ERROR, ABORTED, INCOMPLETE, not-run entry, or a bundle/signature/history problem.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rig.engine.display import PlainDisplay, SafeStream
from rig.engine.operator import Operator, OperatorAnswer
from rig.engine.runner import FAIL, PASS, RunAborted, Runner, RunResult, item_serial_problem
from rig.engine.signals import ABORTED, ERROR, AbortFlag, abort_on_signals
from rig import secret_env
from rig.errors import RigError, UsageError
from rig.fleet import resources
from rig.fleet.report_worker import ReportWorker
from rig.fleet.suite import Suite, SuiteEntry
from rig.identity import software_identity
from rig.record import new_run_id, read_record, utc_now, writable_directory
from rig.station.bench import Bench, describe_error, early_children
from rig.station.lock import StationLock
from rig.station.model import Station

KEY_ENV = "RIG_STATION_KEY"
PASSPHRASE_ENV = "RIG_KEY_PASSPHRASE"
SIGNING_ROLE = "generated_by"


# --------------------------------------------------------------------------------------------
# Logging: plain timestamped lines to stdout and <out>/nightly.log
# --------------------------------------------------------------------------------------------


class Tee:
    """A text stream writing to several streams (the CI log and the archived nightly.log)."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams
        # Re-entrant: the SIGTERM handler logs a line while the main thread may be inside write();
        # a plain Lock would deadlock the nightly right when it is asked to stop.
        self._lock = threading.RLock()

    def write(self, text: str) -> int:
        with self._lock:
            for stream in self.streams:
                stream.write(text)
                stream.flush()
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


class NightlyLog:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def line(self, text: str) -> None:
        self.stream.write(f"{utc_now()[:19]}Z nightly  {text}\n")


# --------------------------------------------------------------------------------------------
# The station key
# --------------------------------------------------------------------------------------------


@dataclass
class StationSigner:
    """The station's decrypted key and the registry that must accept its signatures."""

    key: Any  # reports.keys.SigningKey
    registry: Any  # reports.key_registry.Registry
    key_path: Path

    def sign(self, bundle: Path, audit_log: Path | None) -> Path:
        from reports.signing import sign_bundle

        return sign_bundle(bundle, self.key, SIGNING_ROLE, self.registry, audit_log=audit_log)


UNATTENDED = "nightly (unattended)"  # the operator of an unsigned nightly at a station naming no operators


def nightly_operator(suite: Suite, station: Any, signer: StationSigner | None) -> Suite:
    """``suite`` with its recorded operator checked as `rig run --operator` is (rig.station.operators):
    the suite's ``operator``, else the station key's printed name (who signs the bundles), else
    "nightly (unattended)"; one of the station's known operators when it names any. UsageError
    (exit 2, before anything runs) otherwise."""
    import dataclasses

    from rig.station.operators import operator_identity

    default = signer.key.printed_name if signer is not None else UNATTENDED
    name = operator_identity(suite.operator, station, default=default, field=f"suite {suite.name}: operator")
    return dataclasses.replace(suite, operator=name)


def load_station_signer(key_path: str | None, registry_path: str | None,
                        passphrase_env: str = PASSPHRASE_ENV, station: Any = None) -> StationSigner:
    """Decrypt the station key (path from --key or $RIG_STATION_KEY, passphrase from the
    environment: nobody is there to type it) and check, before anything runs, that the registry
    lets it sign as generated_by now. UsageError (exit 2) otherwise."""
    import datetime as _dt

    from reports.keys import load_key_file
    from reports.key_registry import Registry, default_registry_path
    from rig.station.model import station_tsa

    path_text = key_path or os.environ.get(KEY_ENV, "").strip()
    if not path_text:
        raise UsageError(f"no station key: set ${KEY_ENV} to the station's key file (from `rig keys new "
                         f"--roles {SIGNING_ROLE}`) and ${passphrase_env} to its passphrase, or pass --unsigned "
                         "to run without signing (bundles will not verify as signed)")
    passphrase = secret_env.take(passphrase_env)  # scrubbed: the bench and supervisor never see it
    if not passphrase:
        raise UsageError(f"station key {path_text}: no passphrase in ${passphrase_env}; an unattended run "
                         "cannot prompt for it")
    path = Path(path_text).expanduser()
    key = load_key_file(path, passphrase)
    registry = Registry.load(Path(registry_path) if registry_path else default_registry_path(
        getattr(station, "key_registry", None)), pinned=tuple(getattr(station, "admin_keys", ()) or ()),
        time_stamp_authority=station_tsa(station))
    for trouble in registry.trust_problems():
        raise UsageError(f"station key {key.signer_id}: {trouble}")
    entry = registry.find(key.key_id)
    if entry is None:
        raise UsageError(f"station key {path} ({key.signer_id}, {key.key_id}) is not in the key registry "
                         f"{registry.path}; register it with `rig keys new` or give --registry")
    if SIGNING_ROLE not in entry.roles:
        raise UsageError(f"station key {key.signer_id} may not sign as {SIGNING_ROLE} (its roles: "
                         f"{', '.join(entry.roles)})")
    problem = entry.problem_at(_dt.datetime.now(_dt.timezone.utc)) or registry.entry_problem(entry)
    if problem:
        raise UsageError(f"station key {key.signer_id}: {problem}")
    return StationSigner(key=key, registry=registry, key_path=path)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class EntryResult:
    """What happened to one suite entry."""

    label: str
    procedure_id: str
    procedure_version: str
    outcome: str  # PASS | FAIL | ABORTED | ERROR | INCOMPLETE
    reason: str
    not_run: bool = False
    run_id: str | None = None
    run_dir: Path | None = None
    bundle: Path | None = None
    report_id: str | None = None
    signed: bool = False
    verified: bool | None = None
    history_filed: bool = False
    safe_state_confirmed: bool | None = None
    wall_s: float = 0.0
    started_utc: str | None = None
    results: dict[str, Any] | None = None  # the results document (bundle's results.json)
    problems: list[str] = field(default_factory=list)  # bundle / signature / history problems

    @property
    def is_error(self) -> bool:
        return self.not_run or self.outcome not in (PASS, FAIL) or bool(self.problems)

    def as_json(self, out_dir: Path) -> dict[str, Any]:
        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            try:
                return str(Path(p).resolve().relative_to(out_dir.resolve()))
            except ValueError:
                return str(p)

        return {
            "label": self.label, "procedure": self.procedure_id, "version": self.procedure_version,
            "outcome": self.outcome, "reason": self.reason, "not_run": self.not_run, "run_id": self.run_id,
            "run_dir": rel(self.run_dir), "bundle": rel(self.bundle), "report_id": self.report_id,
            "signed": self.signed, "verified": self.verified, "history_filed": self.history_filed,
            "safe_state_confirmed": self.safe_state_confirmed, "wall_s": round(self.wall_s, 3),
            "started_utc": self.started_utc, "problems": self.problems,
        }


@dataclass
class NightlyResult:
    nightly_id: str
    station_id: str
    suite: Suite
    out_dir: Path
    started_utc: str
    finished_utc: str = ""
    wall_s: float = 0.0
    signed_by: str | None = None
    history: str | None = None  # redacted URL, None if no history
    stop_reason: str | None = None
    entries: list[EntryResult] = field(default_factory=list)
    # What the process held before the bench opened and after it closed (rig.fleet.resources),
    # and the DAQ's listener count after each run: a leak shows the first night it appears.
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if any(e.is_error for e in self.entries):
            return 3
        if any(e.outcome == FAIL for e in self.entries):
            return 1
        return 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            key = "NOT RUN" if e.not_run else e.outcome
            out[key] = out.get(key, 0) + 1
        return out


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


class SuiteStop(AbortFlag):
    """The suite-level stop (budget timer, signals): remembered for the entries still to come,
    and forwarded to the run in progress so it aborts at its next checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.current: AbortFlag | None = None

    def request(self, outcome: str, reason: str) -> bool:
        first = super().request(outcome, reason)
        current = self.current
        if current is not None:
            current.request(outcome, reason)
        return first


BeforeEntry = Callable[[SuiteEntry, Bench], None]


def new_nightly_id(suite_name: str) -> str:
    import datetime as _dt

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{suite_name}-{secrets.token_hex(3)}"


class NightlyRunner:
    """Runs a validated suite on a station. ``run()`` returns the NightlyResult and has written
    junit.xml, summary.html, summary.json and nightly.log into ``out_dir``.

    ``before_entry(entry, bench)`` is called with the open bench just before each procedure runs:
    the place for lab-specific preparation and for tests that inject a simulated fault.
    """

    def __init__(self, *, station: Station, suite: Suite, out_dir: Path, signer: StationSigner | None,
                 history: Any | None, nightly_id: str | None = None, stream: TextIO | None = None,
                 before_entry: BeforeEntry | None = None, history_error: str | None = None,
                 held_lock: StationLock | None = None) -> None:
        self.station = station
        self.suite = suite
        self.out_dir = Path(out_dir)
        self.signer = signer
        self.history = history
        self.history_error = history_error  # why the history could not be opened (then None)
        self.nightly_id = nightly_id or new_nightly_id(suite.name)
        self.before_entry = before_entry
        self._stdout = stream or sys.stdout
        self.stop = SuiteStop()
        self._bench: Bench | None = None
        self.lock: StationLock | None = None  # held while run() runs
        self._daq_listeners: list[int] = []  # listeners on the DAQ after each run (should stay 0)
        self._reports = ReportWorker()  # builds a run's bundle while the next run goes
        # The station lock when the caller already holds it for longer (the bench service holds
        # it for its whole life); otherwise run() takes it.
        self.held_lock = held_lock
        self._software = dict(software_identity())
        # the station's one audit trail (runs, builds, signatures of every nightly); $RIG_AUDIT_LOG overrides
        env_log = os.environ.get("RIG_AUDIT_LOG")
        self.audit_log = Path(env_log) if env_log else Path(getattr(station, "audit_log", None)
                                                           or self.out_dir / "audit.jsonl")

    # -- bench ------------------------------------------------------------------------------

    def _open_bench(self) -> Bench:
        if self._bench is None or self._bench.closed:
            self.log.line(f"opening the bench of station {self.station.id} ({self.station.mode}, "
                          f"{self.station.clock} time)")
            self._bench = Bench.open(self.station, lock=self.lock)
        return self._bench

    def _close_bench(self, why: str | None = None) -> None:
        if self._bench is not None:
            if why:
                self.log.line(f"closing the bench ({why}); the next procedure reopens it")
            self._bench.close()
            self._bench = None

    # -- the suite --------------------------------------------------------------------------

    def run(self) -> NightlyResult:
        """Hold the station lock for the whole suite (StationBusy, exit 2, if another controller
        has it: nothing is started), then run every entry."""
        writable_directory(self.out_dir, "nightly output directory")
        (self.out_dir / "runs").mkdir(parents=True, exist_ok=True)
        holding = (contextlib.nullcontext(self.held_lock) if self.held_lock is not None else
                   StationLock.acquire(self.station, owner=f"rig nightly {self.suite.name}", run_id=self.nightly_id))
        with holding as lock, open(self.out_dir / "nightly.log", "a", encoding="utf-8") as log_file:
            self.lock = lock
            # stdout may be a pipe whose reader goes away or a terminal that hangs up: the log
            # file must get every line all the same (SafeStream drops, never raises).
            self.stream = Tee(SafeStream(self._stdout), log_file)
            self.log = NightlyLog(self.stream)
            note = lock.takeover_note()
            if note is not None:
                self.log.line(f"WARNING: {note}")
                try:
                    lock.record_takeover(self.audit_log)
                except Exception as exc:  # noqa: BLE001 - logged above; the suite may run
                    self.log.line(f"PROBLEM: the lock takeover is not in the audit log: {describe_error(exc)}")
            try:
                return self._run()
            finally:
                self.lock = None

    def _run(self) -> NightlyResult:
        suite = self.suite
        result = NightlyResult(self.nightly_id, self.station.id, suite, self.out_dir, utc_now(),
                               signed_by=None if self.signer is None else
                               f"{self.signer.key.printed_name} ({self.signer.key.signer_id}, {self.signer.key.key_id})",
                               history=None if self.history is None else self.history.describe())
        t0 = time.monotonic()
        # the simulated bench started while `rig nightly` loaded is the suite's, not a leftover
        before = resources.snapshot(exclude_children=early_children())
        result.resources = {"before": before, "daq_listeners_after_each_run": self._daq_listeners}
        self.log.line(f"nightly {self.nightly_id}: suite {suite.name!r} ({len(suite.entries)} run(s), budget "
                      f"{suite.budget_s / 60:g} min) on station {self.station.id} from {self.station.path}")
        self.log.line("bundles signed by " + (result.signed_by or "nobody (--unsigned)") + "; history "
                      + (result.history or f"NOT available: {self.history_error}"))
        timer = threading.Timer(suite.budget_s, self.stop.request,
                                args=(ERROR, f"the suite's wall-clock budget of {suite.budget_s / 60:g} min was spent"))
        timer.daemon = True
        timer.start()
        # Entry n's report is built (ReportWorker) while entry n+1 runs; it is then signed,
        # verified, filed and logged, so the log and the history stay in suite order.
        pending: tuple[int, SuiteEntry, EntryResult] | None = None
        try:
            with abort_on_signals(self.stop, notify=self.log.line, on_hangup=self._hung_up):
                for n, entry in enumerate(suite.entries, start=1):
                    self.log.line(f"[{n}/{len(suite.entries)}] {entry.label}: {entry.procedure.id} "
                                  f"{entry.procedure.version}")
                    outcome = self._entry(entry)
                    result.entries.append(outcome)
                    if pending is not None:
                        self._finish_entry(*pending)
                    pending = (n, entry, outcome)
                if pending is not None:
                    self._finish_entry(*pending)
                    pending = None
        finally:
            timer.cancel()
            self._close_bench()
            timer.join()
            if pending is not None:  # an exception escaped mid-suite: the last run still gets its report
                self._finish_entry(*pending)
            self._reports.close()
        after = result.resources["after"] = resources.snapshot()
        self.log.line(f"resources before the suite: {resources.describe(before)}; after: {resources.describe(after)}; "
                      f"DAQ listeners left after each run: {self._daq_listeners or 'no DAQ'}")
        request = self.stop.requested
        result.stop_reason = None if request is None else request.reason
        result.finished_utc = utc_now()
        result.wall_s = time.monotonic() - t0
        self._write_outputs(result)
        counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
        self.log.line(f"nightly {self.nightly_id} done in {result.wall_s:.1f} s: {counts}; exit {result.exit_code}")
        self.log.line(f"summary {self.out_dir / 'summary.html'}; junit {self.out_dir / 'junit.xml'}")
        return result

    def _hung_up(self) -> None:
        """SIGHUP: an unattended suite does not need its terminal; it goes on, logging to file."""
        self.log.line(f"the terminal hung up (SIGHUP): the nightly continues detached; its log is "
                      f"{self.out_dir / 'nightly.log'}; stop it with `kill -TERM {os.getpid()}`")

    def _log_entry(self, n: int, e: EntryResult) -> None:
        state = f"NOT RUN ({e.outcome})" if e.not_run else e.outcome
        self.log.line(f"[{n}/{len(self.suite.entries)}] {e.label}: {state} in {e.wall_s:.1f} s: {e.reason}")
        if e.safe_state_confirmed is not None:
            self.log.line(f"[{n}/{len(self.suite.entries)}] {e.label}: safe state "
                          + ("confirmed (read back)" if e.safe_state_confirmed else "NOT CONFIRMED"))
        if e.bundle is not None:
            sig = "signed generated_by" if e.signed else "unsigned"
            ver = {True: "verifies", False: "DOES NOT VERIFY", None: "not verified"}[e.verified]
            self.log.line(f"[{n}/{len(self.suite.entries)}] {e.label}: report {e.report_id} ({sig}, {ver}) at {e.bundle}")
        for problem in e.problems:
            self.log.line(f"[{n}/{len(self.suite.entries)}] {e.label}: PROBLEM: {problem}")

    def _not_run(self, entry: SuiteEntry, reason: str) -> EntryResult:
        request = self.stop.requested
        outcome = ABORTED if request is not None and request.outcome == ABORTED else ERROR
        return EntryResult(entry.label, entry.procedure.id, entry.procedure.version, outcome,
                           f"not run: {reason}", not_run=True)

    def _entry(self, entry: SuiteEntry) -> EntryResult:
        """Run the entry; its report is then being built (ReportWorker) while the next one runs."""
        request = self.stop.requested
        if request is not None:
            return self._not_run(entry, request.reason)
        flag = AbortFlag()
        self.stop.current = flag
        t0 = time.monotonic()
        try:
            outcome = self._execute(entry, flag)
        finally:
            self.stop.current = None
        outcome.wall_s = time.monotonic() - t0
        if self._has_record(outcome):
            assert outcome.run_dir is not None
            self._reports.submit(outcome.run_dir, self.audit_log)
        return outcome

    @staticmethod
    def _has_record(e: EntryResult) -> bool:
        return e.run_dir is not None and (e.run_dir / "record.jsonl").is_file()

    def _finish_entry(self, n: int, entry: SuiteEntry, e: EntryResult) -> None:
        if self._has_record(e):
            self._report(entry, e)
        self._log_entry(n, e)

    def _execute(self, entry: SuiteEntry, flag: AbortFlag) -> EntryResult:

        procedure = entry.procedure
        base = EntryResult(entry.label, procedure.id, procedure.version, ERROR, "", started_utc=utc_now())
        via = f"suite file {self.suite.path.name}"
        operator = Operator(self.suite.operator or UNATTENDED, entry.answers, answers_via={k: via for k in entry.answers},
                            interactive=False, abort_requested=flag.reason)
        try:
            operator.preflight(procedure.operator_steps(), procedure.id)
            item_answers: list[OperatorAnswer] = [operator.ask(e) for e in procedure.item_under_test]
        except (RigError, RunAborted, ValueError) as exc:
            base.reason = f"operator answers refused: {exc}"
            return base
        try:
            bench = self._open_bench()
        except RigError as exc:
            base.reason = f"the bench did not open: {exc}"
            self._close_bench()
            return base
        mismatch = item_serial_problem(bench.station, bench.identities,
                                       {a.step: a.answer for a in item_answers})
        if mismatch:
            base.reason = mismatch
            return base
        run_id = new_run_id(procedure.id)
        run_dir = self.out_dir / "runs" / run_id
        if self.lock is not None:
            self.lock.update(run_id=run_id)  # a refused controller learns which run is in progress
        if self.before_entry is not None:
            try:
                self.before_entry(entry, bench)
            except Exception as exc:  # noqa: BLE001 - preparation failed: this entry errors, others go on
                base.reason = f"preparation before the run failed: {describe_error(exc)}"
                return base
        display = PlainDisplay(self.stream)
        try:
            run: RunResult = Runner(
                procedure=procedure, spec=entry.spec, params=entry.params, bench=bench, run_dir=run_dir,
                run_id=run_id, operator=operator, display=display, abort=flag,
                item_under_test={a.step: a.answer for a in item_answers}, pre_answers=item_answers,
                software=self._software, audit_log=self.audit_log,
            ).run()
        except RigError as exc:  # e.g. the record cannot be created: nothing ran
            base.reason = str(exc)
            self._close_bench("the run could not start")
            return base
        finally:
            display.close()
        left = resources.daq_listeners(bench.daq) if bench.daq is not None else None
        if left is not None:
            self._daq_listeners.append(left)
        if not run.safe_state_confirmed or run.outcome == ERROR:
            self._close_bench("safe state not confirmed" if not run.safe_state_confirmed else "the run ended in ERROR")
        base.outcome, base.reason = run.outcome, run.reason
        base.run_id, base.run_dir, base.safe_state_confirmed = run.run_id, run.run_dir, run.safe_state_confirmed
        return base

    # -- bundle, signature, verification, history ---------------------------------------------------

    def _report(self, entry: SuiteEntry, e: EntryResult) -> None:
        from reports.canonical import load_json_bytes
        from reports.verify import verify_bundle

        assert e.run_dir is not None
        try:
            e.bundle = self._reports.build(e.run_dir, self.audit_log)
            e.results = load_json_bytes((e.bundle / "results.json").read_bytes(), "results.json")
            e.report_id = str(e.results.get("report_id"))
            e.outcome = str(e.results["verdict"]["outcome"])  # the bundle's verdict is authoritative
        except Exception as exc:  # noqa: BLE001 - the run stands; the missing report is a problem
            e.problems.append(f"report bundle not built: {describe_error(exc)}")
            e.results = self._results_without_bundle(e)
        manifest_sha256 = None
        if e.bundle is not None:
            if self.signer is not None:
                try:
                    self.signer.sign(e.bundle, self.audit_log)
                    e.signed = True
                except Exception as exc:  # noqa: BLE001
                    e.problems.append(f"bundle not signed: {describe_error(exc)}")
            check = verify_bundle(e.bundle, None if self.signer is None else self.signer.registry,
                                  allow_unsigned=self.signer is None)
            e.verified = check.ok
            manifest_sha256 = check.manifest_sha256 if check.ok else None
            if not check.ok:
                e.problems.append("bundle does not verify: " + "; ".join(check.reasons()))
        if self.history is None:
            e.problems.append(f"not filed in the history: {self.history_error or 'no history database'}")
        elif e.results is not None:
            try:
                e.history_filed = self.history.add_results(
                    e.results, bundle_path=e.bundle.resolve() if e.bundle else None, nightly_id=self.nightly_id,
                    suite_label=entry.label, manifest_sha256=manifest_sha256)
                if not e.history_filed:
                    e.problems.append(f"not filed in the history: run id {e.run_id} is already there")
            except Exception as exc:  # noqa: BLE001
                e.problems.append(f"not filed in the history: {describe_error(exc)}")

    @staticmethod
    def _results_without_bundle(e: EntryResult) -> dict[str, Any] | None:
        """Results straight from the record, so the history still gets the run."""
        from reports.canonical import sha256_hex
        from reports.results import build_results

        try:
            assert e.run_dir is not None
            record = read_record(e.run_dir)
            return build_results(record, report_id="", record_sha256=sha256_hex(record.path.read_bytes()))
        except Exception:  # noqa: BLE001 - nothing more to salvage
            return None

    # -- outputs ----------------------------------------------------------------------------------

    def _write_outputs(self, result: NightlyResult) -> None:
        from rig.fleet.summary import build_junit, build_summary_html

        def write(name: str, data: bytes) -> None:
            tmp = self.out_dir / f".{name}.tmp-{os.getpid()}"
            tmp.write_bytes(data)
            os.replace(tmp, self.out_dir / name)

        write("junit.xml", build_junit(result))
        summary = {
            "nightly_id": result.nightly_id, "suite": result.suite.name, "suite_file": str(result.suite.path),
            "station": result.station_id, "started_utc": result.started_utc, "finished_utc": result.finished_utc,
            "wall_s": round(result.wall_s, 3), "budget_s": result.suite.budget_s, "exit_code": result.exit_code,
            "stop_reason": result.stop_reason, "signed_by": result.signed_by, "history": result.history,
            "resources": result.resources,
            "entries": [e.as_json(self.out_dir) for e in result.entries],
        }
        write("summary.json", (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
        try:
            html = build_summary_html(result, self.history)
        except Exception as exc:  # noqa: BLE001 - a broken summary must not hide the JUnit and exit code
            self.log.line(f"PROBLEM: summary.html not written: {describe_error(exc)}")
            return
        write("summary.html", html)


__all__ = [
    "KEY_ENV", "PASSPHRASE_ENV", "EntryResult", "NightlyResult", "NightlyRunner", "StationSigner",
    "load_station_signer", "new_nightly_id",
]
