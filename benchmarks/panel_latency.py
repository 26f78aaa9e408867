"""The operator panel's live view: how late a DAQ point is drawn, and what watching costs a run.

    python -m benchmarks.panel_latency [--quick]

1. **Latency** (target: median < 250 ms). The simulated bench in real time, DAQ chunks at 5 Hz;
   a delivery_check submitted to the bench service and watched in headless Chromium (Debian's,
   through Playwright). For every point: the service's wall time when the DAQ chunk reached its
   chunk listener (stamped into the event) to the browser's wall time at the first animation frame
   after uPlot was given the point — the whole path: event hub, SSE, JSON, the page's batching and
   the chart. Same machine, same clock. Median and p99.
2. **Viewer load** (target: ratio <= 1.05). The same procedure in virtual time, where the run is
   CPU-bound and any cost of the event stream shows as wall time: the run's own pace (the record's
   run_finished wall_s) with 20 concurrent event-stream viewers of that job vs none, alternating,
   median of the trials. A viewer is one SSE connection reading the whole stream, as a browser tab
   holds; the viewers run in a separate process (their browsers would be on other computers).

Exits 1 when a target is missed; without Chromium the latency part says why it was skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("RIG_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LATENCY_TARGET_MS = 250.0
RATIO_TARGET = 1.05
VIEWERS = 20
ANSWERS = {"setup": "done"}


def item_serial() -> dict[str, str]:
    """The item under test is the shipped station's pump: its entered serial must match."""
    station = tomllib.loads((REPO / "rig.toml").read_text(encoding="utf-8"))
    return {"item_serial": str(station["instruments"]["pump"]["serial"])}


def station_variant(directory: Path, clock: str, daq_options: dict[str, Any]) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from conftest import dump_toml  # the tests' minimal TOML writer
    finally:
        sys.path.pop(0)
    data = tomllib.loads((REPO / "rig.toml").read_text(encoding="utf-8"))
    data["station"]["runs_dir"] = str(directory / "runs")
    data["station"]["clock"] = clock
    for inst in data["instruments"].values():
        if inst.get("kind") == "daq":
            inst.setdefault("options", {}).update(daq_options)
    path = directory / "station.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


def background(station_path: Path) -> Any:
    from rig.service.accounts import Accounts
    from rig.service.server import BackgroundService
    from rig.service.state import Service
    from rig.station.config import load_station

    return BackgroundService(Service(load_station(station_path), Accounts(None)), lock_dir=station_path.parent)


def submit(url: str, fields: dict[str, str], answers: dict[str, str] | None = None) -> dict[str, Any]:
    return _post(url, "/api/jobs", {"procedure": "delivery_check", "fields": {**fields, **item_serial()},
                                    "answers": ANSWERS if answers is None else answers})


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    with httpx.Client(base_url=url, timeout=60, headers={"Origin": url}) as http:
        csrf = http.get("/api/session").json()["csrf"]
        r = http.post(path, headers={"X-CSRF-Token": csrf}, json=body)
        r.raise_for_status()
        return r.json()


def wait_for(what: str, ready: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:.0f} s")
        time.sleep(0.05)


def wait_done(url: str, job: str, timeout_s: float) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            summary = http.get(f"/api/jobs/{job}").json()
            if summary["state"] == "finished":
                return summary
            time.sleep(0.2)
    raise TimeoutError(f"job {job} did not finish within {timeout_s:.0f} s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- 1. latency -------------------------------------------------------------------------------------


def latency(quick: bool) -> dict[str, Any]:
    if not CHROMIUM.exists():
        return {"skipped": f"no Chromium at {CHROMIUM} (run .ci/install-chromium.sh)"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (pip install -e '.[test]')"}
    minutes = "1" if quick else "3"
    with tempfile.TemporaryDirectory() as tmp, background(
            station_variant(Path(tmp), "real", {"chunk_samples": 4})) as svc, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        job = submit(svc.url, {"rate_ml_h": "6", "duration_min": minutes, "settle_s": "5", "sample_interval_s": "10"})
        page.goto(f"{svc.url}/jobs/{job['id']}")
        page.wait_for_function("() => window.__panel.outcome !== null", timeout=900_000, polling=500)
        latencies = page.evaluate("() => window.__panel.latencies")
        outcome = page.evaluate("() => window.__panel.outcome")
        browser.close()
    if not latencies:  # a run that never started is a failure of the benchmark, not a skip
        raise RuntimeError(f"no point reached the browser (the run ended {outcome})")
    return {"n": len(latencies), "median_ms": statistics.median(latencies), "p99_ms": pct(latencies, 0.99),
            "max_ms": max(latencies), "outcome": outcome}


# -- 2. viewer load -----------------------------------------------------------------------------------


async def _view(url: str, job: str) -> int:
    """One SSE viewer reading the whole stream as raw bytes (a browser on another computer costs
    this machine nothing; here the viewers share its cores, so they are kept as cheap as a reader
    can be): the count of events received."""
    import httpx

    received, tail = 0, b""
    async with httpx.AsyncClient(base_url=url, timeout=None) as http:
        await http.get("/api/session")
        async with http.stream("GET", f"/api/events?job={job}") as r:
            async for block in r.aiter_raw():
                text = tail + block
                received += text.count(b"\ndata: ") + text.startswith(b"data: ")
                if b'"type":"job_done"' in text:
                    break
                tail = text[-64:]
                received -= tail.count(b"\ndata: ") + tail.startswith(b"data: ")  # counted again next block
    return received


async def _viewers(url: str, job: str, n: int) -> list[int]:
    return list(await asyncio.gather(*(_view(url, job) for _ in range(n))))


def viewer_process(url: str, job: str, n: int) -> None:
    counts = asyncio.run(_viewers(url, job, n))
    print(json.dumps(counts))


def one_run(svc: Any, runs_dir: Path, viewers: int, minutes: str) -> tuple[float, list[int]]:
    """One delivery_check held at its set-up question until the viewers watch (their process start
    and connections are not the run's cost), then answered; the run's pace is the wall time from
    that answer to run_finished, both read from the record."""
    url = svc.url
    job = submit(url, {"rate_ml_h": "1", "duration_min": minutes}, answers={})
    jobs = svc.service.jobs
    wait_for("the run did not ask its set-up question",
             lambda: jobs.get(job["id"]).summary().get("prompt") is not None)
    proc = None
    if viewers:
        before = svc.service.hub.subscriber_count
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.panel_latency", "--viewers", url, job["id"],
                                 str(viewers)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        wait_for(f"{viewers} viewers did not connect", lambda: svc.service.hub.subscriber_count >= before + viewers)
    _post(url, f"/api/jobs/{job['id']}/answer", {"step": "setup", "answer": "done"})
    summary = wait_done(url, job["id"], 900)
    counts: list[int] = []
    if proc is not None:
        out, _ = proc.communicate(timeout=120)
        counts = json.loads(out.strip().splitlines()[-1])
    if summary["outcome"] != "PASS":
        raise RuntimeError(f"run ended {summary['outcome']}: {summary['reason']}")
    import datetime as dt

    from rig.record import read_record

    record = read_record(runs_dir / job["run_id"])
    answered = next(e for e in record.of_type("operator_entry") if e.get("step") == "setup")
    wall_s = (dt.datetime.fromisoformat(record.finished["t_utc"])
              - dt.datetime.fromisoformat(answered["t_utc"])).total_seconds()
    return wall_s, counts


def viewer_load(quick: bool) -> dict[str, Any]:
    trials = 3 if quick else 7  # a 24 h virtual run varies ±15 % run to run on a quiet VM: more pairs
    minutes = "240" if quick else "1440"  # long enough that a run is seconds of wall time
    walls: dict[int, list[float]] = {0: [], VIEWERS: []}
    events: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        station = station_variant(Path(tmp), "virtual", {})
        with background(station) as svc:
            one_run(svc, Path(tmp) / "runs", 0, minutes)  # warm-up: imports, caches
            for trial in range(trials):
                order = (0, VIEWERS) if trial % 2 == 0 else (VIEWERS, 0)
                for n in order:
                    wall, counts = one_run(svc, Path(tmp) / "runs", n, minutes)
                    walls[n].append(wall)
                    events += counts
    none, with_viewers = statistics.median(walls[0]), statistics.median(walls[VIEWERS])
    return {"trials": trials, "procedure_min": float(minutes), "wall_none_s": none, "wall_viewers_s": with_viewers,
            "ratio": with_viewers / none, "events_per_viewer": min(events) if events else 0,
            "all_none": walls[0], "all_viewers": walls[VIEWERS]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.panel_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer trials")
    parser.add_argument("--viewers", nargs=3, metavar=("URL", "JOB", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.viewers:
        viewer_process(args.viewers[0], args.viewers[1], int(args.viewers[2]))
        return 0
    missed = False
    lat = latency(args.quick)
    print("panel latency: DAQ chunk at the service -> point drawn in the browser (sim in real time, 5 chunks/s)")
    if "skipped" in lat:
        print(f"  SKIPPED: {lat['skipped']}")
    else:
        ok = lat["median_ms"] < LATENCY_TARGET_MS
        missed |= not ok
        print(f"  points {lat['n']}, run {lat['outcome']}")
        print(f"  median {lat['median_ms']:.1f} ms   p99 {lat['p99_ms']:.1f} ms   max {lat['max_ms']:.1f} ms   "
              f"target median < {LATENCY_TARGET_MS:.0f} ms   {'OK' if ok else 'MISSED'}")
    load = viewer_load(args.quick)
    ok = load["ratio"] <= RATIO_TARGET
    missed |= not ok
    print(f"viewer load: delivery_check {load['procedure_min']:g} min in virtual time, run wall time (median of "
          f"{load['trials']})")
    print(f"  no viewers (baseline) {load['wall_none_s']:.2f} s   {VIEWERS} viewers {load['wall_viewers_s']:.2f} s   "
          f"({load['events_per_viewer']} events each)")
    print(f"  ratio {load['ratio']:.3f}   target <= {RATIO_TARGET}   {'OK' if ok else 'MISSED'}")
    print(f"  trials none {[round(w, 2) for w in load['all_none']]}  viewers {[round(w, 2) for w in load['all_viewers']]}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
