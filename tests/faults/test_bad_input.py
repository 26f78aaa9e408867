"""Malformed input through the CLI: one clear message naming the problem, a non-zero exit, never a
traceback.

Kinds covered here (tests/test_config.py already holds 47 malformed *station* cases through the
loader, tests/test_suite.py the suite schema, tests/test_runner_cli.py six bad parameters): station
files that are not text, not finite or truncated; parameters with non-finite, overflowing, empty,
fullwidth-digit or wrongly-united values; suite files, answers files, key files, key registries, run
records and report bundles that are truncated, mistyped, NaN, huge, unicode or path-traversing.
Each case is one `rig ...` command line run in-process (``rig_main`` from test_runner_cli).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import write_station
from test_runner_cli import ANSWERS, REPO, rig_main  # noqa: F401 - rig_main is a fixture

from reports.bundle import build_bundle
from reports.key_registry import Registry
from reports.synthetic import make_signer, write_record

Rig = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], list[str]]  # writes its input under tmp_path, returns the argv
    message: str  # regex the output must contain: it names the problem


def _file(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def _station_text(tmp: Path, old: str, new: str) -> Path:
    text = write_station(tmp, name="base.toml").read_text(encoding="utf-8")
    assert old in text, old
    return _file(tmp, "station.toml", text.replace(old, new, 1))


def station(old: str, new: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["check", "--station", str(_station_text(tmp, old, new))]


def param(*values: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "delivery_check", *[a for v in values for a in ("--param", v)], *ANSWERS,
                        "--out", str(tmp / "runs")]


def answers(content: str, suffix: str = ".toml") -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "delivery_check", "--answers", str(_file(tmp, f"answers{suffix}", content)),
                        "--out", str(tmp / "runs")]


def suite(content: str | bytes) -> Callable[[Path], list[str]]:
    return lambda tmp: ["nightly", "--station", str(write_station(tmp)), "--unsigned",
                        "--suite", str(_file(tmp, "suite.toml", content)), "--out", str(tmp / "out")]


# -- signing material -------------------------------------------------------------------------------


SUITE_HEAD = '[suite]\nname = "bad"\n\n'


def _lab(tmp: Path) -> tuple[Registry, Path]:
    registry = Registry(tmp / "keys" / "registry.json")
    make_signer(registry, tmp / "keys", "jdoe", "Jane Doe", ["performed_by"])
    return registry, tmp / "keys" / "jdoe.key"


def _bundle(tmp: Path) -> Path:
    return build_bundle(write_record(tmp / "runs" / "r1", "PASS", duration_s=120.0), audit_log=tmp / "audit.jsonl")


def sign_with(edit_key: Callable[[Path], None] | None = None,
              edit_registry: Callable[[Path], None] | None = None) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        registry, key = _lab(tmp)
        if edit_key:
            edit_key(key)
        if edit_registry:
            edit_registry(registry.path)
        return ["report", "sign", str(_bundle(tmp)), "--role", "performed_by", "--key", str(key),
                "--registry", str(registry.path), "--passphrase-env", "FAULTS_PASSPHRASE",
                "--audit-log", str(tmp / "audit.jsonl")]
    return make


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def edit_json(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return edit


def _first_entry(registry: dict) -> dict:
    keys = registry["keys"]
    return keys[0] if isinstance(keys, list) else next(iter(keys.values()))


# -- records and bundles ----------------------------------------------------------------------------


def record(edit: Callable[[list[str]], list[str]], command: str = "build") -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        run = write_record(tmp / "runs" / "r1", "PASS", duration_s=120.0)
        lines = (run / "record.jsonl").read_text().splitlines()
        (run / "record.jsonl").write_text("\n".join(edit(lines)) + "\n")
        if command == "show":
            return ["show", str(run)]
        return ["report", "build", str(run), "--audit-log", str(tmp / "audit.jsonl")]
    return make


def replace_in_measurement(old: str, new: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        i = next(i for i, line in enumerate(lines) if '"type": "measurement"' in line)
        assert old in lines[i], (old, lines[i])
        lines[i] = lines[i].replace(old, new, 1)
        return lines
    return edit


def bundle(edit: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = _bundle(tmp)
        edit(path)
        return ["report", "verify", str(path), "--allow-unsigned"]
    return make


def manifest_entry_path(new_path: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["files"][0]["path"] = new_path
        (path / "manifest.json").write_text(json.dumps(manifest))
    return edit


CASES = [
    # station files (other kinds than tests/test_config.py's schema cases)
    Case("station-not-utf8", lambda tmp: ["check", "--station", str(_file(tmp, "s.toml", b"\xff\xfe[station]\x00"))],
         r"s\.toml is invalid.*(UTF-8|invalid TOML)"),
    Case("station-truncated", lambda tmp: ["check", "--station", str(
        _file(tmp, "s.toml", write_station(tmp).read_text()[:200].rsplit("\n", 1)[0] + "\n[instruments.pu"))],
        r"invalid TOML"),
    Case("station-nan-limit", station("max_line_pressure_kpa = 120.0", "max_line_pressure_kpa = nan"),
         r"safety\.max_line_pressure_kpa"),
    Case("station-huge-limit", station("max_line_pressure_kpa = 120.0", "max_line_pressure_kpa = 1e308"),
         r"safety\.max_line_pressure_kpa"),
    Case("station-unicode-key", station('clock = "virtual"', 'cl\u00f6ck = "virtual"'),
         r"invalid TOML syntax: .*\(at line \d+, column \d+\)"),
    Case("station-quoted-unicode-key", station('clock = "virtual"', 'clock = "virtual"\n"cl\u00f6ck" = 1'),
         r'station\."cl\u00f6ck": unknown key .*did you mean "clock"'),
    # parameters
    Case("param-inf", param("rate_ml_h=inf"), r"parameter rate_ml_h: 'inf' is not a (finite )?number"),
    Case("param-overflow", param("rate_ml_h=1e400"), r"parameter rate_ml_h: 1e400 is not a finite number"),
    Case("param-empty", param("rate_ml_h="), r"parameter rate_ml_h"),
    Case("param-no-equals", param("rate_ml_h"), r"rate_ml_h.*NAME=VALUE"),
    Case("param-decimal-comma", param("rate_ml_h=1,5"), r"parameter rate_ml_h: '1,5' uses a decimal comma; write 1\.5"),
    Case("param-fullwidth-digit", param("rate_ml_h=\uff11"), r"parameter rate_ml_h: '\uff11' is not a number"),
    Case("param-unicode-minus", param("rate_ml_h=\u22121"), r"parameter rate_ml_h: '\u22121' is not a number"),
    Case("param-wrong-unit", param("rate_ml_h=1uL/h"), r"parameter rate_ml_h: unit 'uL/h' is not accepted"),
    Case("param-huge-integerish", param("duration_min=" + "9" * 400), r"parameter duration_min"),
    # answers files
    Case("answers-truncated-json", answers('{"item_serial": "SN1", "setup": "do', ".json"), r"answers.*(JSON|json)"),
    Case("answers-wrong-type", answers('item_serial = ["SN1"]\nsetup = "done"\n'), r"item_serial"),
    # suite files
    Case("suite-binary", suite(b"\x00\x01\x02 runs"), r"suite\.toml.*(UTF-8|invalid TOML)"),
    Case("suite-path-traversal-procedure", suite(SUITE_HEAD + '[[run]]\nprocedure = "../../etc/passwd"\n'),
         r"\.\./\.\./etc/passwd"),
    Case("suite-nan-parameter", suite(SUITE_HEAD + '[[run]]\nprocedure = "delivery_check"\n[run.params]\nrate_ml_h = nan\n'),
         r"rate_ml_h"),
    Case("suite-unicode-procedure", suite(SUITE_HEAD + '[[run]]\nprocedure = "d\u00e9livery_check"\n'),
         r"d\u00e9livery_check"),
    # key files
    Case("key-truncated", sign_with(edit_key=truncate), r"jdoe\.key"),
    Case("key-empty", sign_with(edit_key=lambda p: p.write_text("")), r"jdoe\.key"),
    Case("key-wrong-kdf", sign_with(edit_key=edit_json(lambda d: d["kdf"].update(name="md5"))), r"jdoe\.key.*(kdf|KDF|scrypt)"),
    Case("key-salt-not-base64", sign_with(edit_key=edit_json(lambda d: d["kdf"].update(salt="***"))), r"jdoe\.key"),
    # registries
    Case("registry-truncated", sign_with(edit_registry=truncate), r"registry\.json"),
    Case("registry-wrong-type", sign_with(edit_registry=lambda p: p.write_text('{"keys": "none"}')), r"registry\.json"),
    Case("registry-bad-date", sign_with(edit_registry=edit_json(lambda d: _first_entry(d).update(valid_from="yesterday"))),
         r"registry\.json.*(valid_from|yesterday)"),
    Case("registry-roles-not-a-list", sign_with(edit_registry=edit_json(lambda d: _first_entry(d).update(roles="performed_by"))),
         r"registry\.json: keys\[0\] is invalid: roles must be a list"),
    Case("registry-huge-unknown-role", sign_with(edit_registry=edit_json(lambda d: _first_entry(d).update(roles=["x" * 100000]))),
         r"registry\.json: keys\[0\] is invalid: roles must be a list"),
    # run records
    Case("record-corrupt-middle-line", record(lambda lines: lines[:2] + [lines[2][:17]] + lines[3:]),
         r"record\.jsonl line 3 is corrupt"),
    Case("record-first-line-array", record(lambda lines: ["[1, 2, 3]"] + lines[1:], "show"),
         r"record\.jsonl line 1 is corrupt|does not start with a run_started"),
    Case("record-nan-value", record(replace_in_measurement('"value": ', '"value": NaN, "was": ')),
         r"record\.jsonl line \d+ is corrupt: NaN is not a number"),
    Case("record-huge-value", record(replace_in_measurement('"value": ', '"value": 1e999, "was": ')),
         r"record\.jsonl line \d+ is corrupt: 1e999 overflows"),
    Case("record-path-traversal-run", lambda tmp: ["show", "../../../../etc/passwd"],
         r"run record \.\./\.\./\.\./\.\./etc/passwd line 1 is corrupt"),
    # report bundles
    Case("bundle-manifest-truncated", bundle(lambda p: truncate(p / "manifest.json")), r"manifest\.json"),
    Case("bundle-path-traversal-entry", bundle(manifest_entry_path("../../../../etc/passwd")),
         r"\.\./\.\./\.\./\.\./etc/passwd"),
    Case("bundle-results-nan", bundle(lambda p: (p / "results.json").write_text('{"verdict": NaN}')),
         r"results\.json"),
    Case("bundle-is-a-file", lambda tmp: ["report", "verify", str(_file(tmp, "bundle", "not a directory"))],
         r"no bundle directory"),
]


def test_at_least_thirty_distinct_cases() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gets_one_clear_message(case: Case, tmp_path: Path, rig_main: Rig,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULTS_PASSPHRASE", "correct horse battery staple")
    monkeypatch.delenv("RIG_SUITE", raising=False)
    proc = rig_main(*case.make(tmp_path))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output
    assert re.search(case.message, output, re.S), output
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("rig: error:")]
    assert len(error_lines) <= 1, proc.stderr  # one error, whatever detail lines follow it
    assert not (tmp_path / "runs").exists() or case.make.__qualname__.startswith(("record", "sign_with", "bundle"))


def test_a_record_value_of_the_wrong_type_is_never_reported_as_pass(tmp_path: Path, rig_main: Rig) -> None:
    """A record edited to hold "1.5" (a string) where a number belongs still claims outcome pass for
    that measurement; the bundle must not turn that into a PASS verdict."""
    argv = record(replace_in_measurement('"value": ', '"value": "1.5", "was": '))(tmp_path)
    proc = rig_main(*argv)
    assert proc.returncode == 0 and "(ERROR)" in proc.stdout, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "runs" / "r1" / "report" / "results.json").read_text())
    assert results["verdict"]["outcome"] == "ERROR"
    assert "did not pass" in results["verdict"]["reason"]
