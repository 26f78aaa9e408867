"""`rig report build RUN` that pauses half-way through writing the bundle, for the matrix's
report-phase signal cells: ``python -m faults.report_hold RUN MARKER [rig report build options]``.

Why a pause: a bundle is written in well under a second, so a signal cannot be aimed at "during
report writing" by timing alone. The only change to the real code path is that the plot step
(after record.jsonl, raw/ and results.json are in the partial bundle, before report.html, junit.xml
and manifest.json) first creates MARKER and sleeps; the signal lands in that sleep.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import reports.bundle
from rig.cli.main import main

HOLD_S = 60.0


def _holding(original: Any, marker: Path) -> Any:
    def build_plots(*args: Any, **kwargs: Any) -> Any:
        marker.write_text("holding inside build_bundle\n")
        time.sleep(HOLD_S)
        return original(*args, **kwargs)

    return build_plots


if __name__ == "__main__":
    run_dir, marker, *extra = sys.argv[1:]
    reports.bundle.build_plots = _holding(reports.bundle.build_plots, Path(marker))
    sys.exit(main(["report", "build", run_dir, *extra]))
