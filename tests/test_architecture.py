"""The layering of docs/architecture.md, enforced on the import graph (stdlib ``ast``).

Why a test: a circle between files, or a lower layer importing a higher one, is how the engine
ended up loading the simulated bench and the nightly a CLI module. Every import counts, including
those inside functions and under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rig", "instruments", "procedures", "reports")

# Layer of each package prefix (the longest matching prefix wins); a module may import only modules
# of its own layer or a lower one. Same number = peers that may import each other's files.
LAYERS: dict[str, int] = {
    "rig": 0, "rig.errors": 0, "rig.record": 0, "rig.identity": 0, "rig.textsafe": 0, "rig.secret_env": 0,
    "rig.safeio": 0, "rig.settings": 0,
    "instruments": 1,
    "rig.analysis": 2,
    "reports": 2,
    "rig.station": 3,
    "instruments.sim": 4,  # served from a station description; loaded only by the bench assembly
    "instruments.sim.emulators": 1,  # the emulator catalog: names and import paths, no simulator code
    "rig.station.bench": 4,  # the bench assembly: opens drivers, starts or attaches the simulated bench
    "rig.engine": 5,
    "procedures": 6,
    "rig.fleet": 7,
    "rig.service": 8,  # the bench service (rig serve): job queue, API, event stream, operator panel
    "rig.cli": 9,
    "rig.__main__": 9,
}
# Who may import the simulated bench at all (besides itself).
SIM_IMPORTERS = ("rig.station.bench", "rig.cli.commands.sim")
# Parts of instruments.sim that hold no simulator code, so anyone may read them: the emulator
# catalog (the station loader checks the options an emulator reads, Emulator.SIM_OPTIONS, through it).
SIM_CATALOG = ("instruments.sim.emulators",)
# Edges that break no layer rule but must never exist, with the reason.
FORBIDDEN: list[tuple[str, str, str]] = [
    ("reports", "rig.engine", "reports read the record format, never the engine"),
    ("reports", "rig.cli", "reports never import the command line"),
    ("rig.engine", "rig.cli", "the engine never imports the command line"),
    ("procedures", "rig.engine.runner", "procedures see the engine only through rig.engine.context"),
    ("procedures", "rig.engine.step_context", "procedures see the engine only through rig.engine.context"),
    ("procedures", "rig.station.bench", "procedures never assemble a bench"),
    ("rig.service", "rig.cli", "the service never imports the command line"),
    # Emulators are written from the manuals, not from our drivers: a misreading shared by both
    # would pass every end-to-end test (each side is pinned to the manuals' bytes instead).
    *[("instruments.sim", f"instruments.{driver}", "an emulator never imports a driver module")
      for driver in ("ne1000", "reglo_icc", "mt_sics", "scpi_dmm", "daq", "daq_link", "daq_outputs",
                     "daq_listeners", "daq_acquisition")],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in the file (resolved to the deepest known module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                hit = resolve(alias.name)
                if hit:
                    out.add(hit)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_pkg else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            for alias in node.names:
                hit = resolve(f"{mod}.{alias.name}") or resolve(mod)
                if hit:
                    out.add(hit)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def layer(name: str) -> int:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[best]


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in g:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(g[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        result.append(sorted(comp))
    return result


def test_no_import_cycles_between_files() -> None:
    assert find_cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def violations(g: dict[str, set[str]]) -> list[str]:
    found = []
    for src, targets in sorted(g.items()):
        for dst in sorted(targets):
            if layer(dst) > layer(src):
                found.append(f"{src} -> {dst}: imports upwards (layer {layer(src)} -> {layer(dst)})")
            if (under(dst, "instruments.sim") and not under(src, "instruments.sim") and src not in SIM_IMPORTERS
                    and dst not in SIM_CATALOG):
                found.append(f"{src} -> {dst}: only the bench assembly may load the simulated bench")
            for a, b, why in FORBIDDEN:
                if under(src, a) and under(dst, b):
                    found.append(f"{src} -> {dst}: {why}")
    return found


def test_layers_only_import_downwards() -> None:
    assert violations(graph()) == []


def test_the_layer_check_catches_a_forbidden_edge() -> None:
    bad = {"reports.bundle": {"rig.engine.runner"}, "rig.engine.runner": {"rig.cli.main"},
           "procedures.leak": {"instruments.sim.model"},
           "instruments.sim.ne1000_emulator": {"instruments.ne1000"}}
    found = "\n".join(violations(bad))
    assert "instruments.sim.ne1000_emulator -> instruments.ne1000: an emulator never imports a driver" in found
    assert "reports.bundle -> rig.engine.runner" in found
    assert "rig.engine.runner -> rig.cli.main" in found
    assert "procedures.leak -> instruments.sim.model: only the bench assembly" in found


def test_every_project_module_has_a_layer() -> None:
    for name in project_modules():
        layer(name)  # raises ValueError (max of nothing) for a module outside every layer


def test_importing_a_procedure_loads_no_simulated_bench() -> None:
    code = ("import sys, procedures.leak, procedures.flow_accuracy; "
            "print(sorted(m for m in sys.modules if m.startswith(('instruments.sim', 'rig.engine.runner', "
            "'rig.station.bench', 'rig.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("rule", sorted(LAYERS))
def test_every_layer_in_the_doc(rule: str) -> None:
    doc = (REPO / "docs" / "architecture.md").read_text()
    assert f"`{rule}`" in doc, f"docs/architecture.md does not describe {rule}"


# Classes allowed more than MAX_METHODS methods, each with why and its count today as a ceiling
# (a class may shrink, never grow past it): the drivers and emulators mirror an instrument's
# command set, the model and the display are interfaces with one method per thing they show.
MAX_METHODS = 16
BIG_CLASSES: dict[str, tuple[int, str]] = {
    "instruments.ne1000.NE1000": (39, "one method per pump command it uses (Pump protocol + NE-1000 set)"),
    "instruments.sim.ne1000_emulator.NE1000Emulator": (38, "one handler per command of manual 10.4"),
    "instruments.sim.model.FluidLine": (35, "the simulated line: one method per physical effect"),
    "instruments.sim.reglo_icc_emulator.RegloICCEmulator": (32, "one handler per Reglo ICC command"),
    "instruments.sim.daq_service.DaqService": (30, "one method per NI-DAQmx gRPC call the driver makes"),
    "instruments.sim.mt_sics_emulator.MTSicsEmulator": (23, "one handler per MT-SICS command"),
    "instruments.daq.Daq": (22, "the DAQ's public face: one-line calls into daq_link/outputs/acquisition/listeners"),
    "instruments.reglo_icc.RegloICC": (22, "one method per pump command it uses (Pump protocol + Reglo set)"),
    "rig.engine.display.Display": (22, "the display interface: one method per thing a run shows"),
    "instruments.sim.daq_device.VirtualDaq": (21, "the simulated device: tasks, channels, timing, read-back"),
    "rig.station.bench.Bench": (20, "opens every instrument of a station and the simulated bench"),
    "instruments.sim.scpi_dmm_emulator.ScpiDmmEmulator": (19, "one handler per SCPI command"),
    "reports.key_registry.Registry": (17, "load/save, entries, administrators and their signatures, trust checks: "
                                           "a candidate to split (document signing vs entries)"),
}


def method_counts() -> dict[str, int]:
    counts = {}
    for name, path in project_modules().items():
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.ClassDef):
                counts[f"{name}.{node.name}"] = sum(
                    isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) for item in node.body)
    return counts


def test_classes_stay_small() -> None:
    too_big = [f"{cls}: {n} methods (limit {BIG_CLASSES.get(cls, (MAX_METHODS,))[0]})"
               for cls, n in sorted(method_counts().items()) if n > BIG_CLASSES.get(cls, (MAX_METHODS,))[0]]
    assert too_big == [], "split the class by job (docs/architecture.md) or say in BIG_CLASSES why it is one"
