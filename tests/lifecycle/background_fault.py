"""A test-only procedure whose background thread fails mid-run (tests/test_background_faults.py).

Why: a failure in a thread other than the procedure's — a DAQ chunk listener that raises, a
helper thread that dies — must be recorded in the run record (and the nightly log) and make the
run ERROR, never scroll by as a traceback while the run reports PASS. ``fail`` picks the thread:
1 = a DAQ chunk listener raises on its first chunk, 2 = a plain thread raises, 0 = nothing fails
(the same run then passes). Found through ``RIG_EXTRA_PROCEDURES=tests.lifecycle.background_fault``.
"""

from __future__ import annotations

import threading
from typing import Any

from rig.engine.context import StepContext
from rig.engine.procedure import Measurement, Parameter, Procedure, Step


def _failing_listener(chunk: Any) -> None:
    raise ValueError(f"listener bug at sample {chunk.first_index}")


def _failing_thread() -> None:
    raise RuntimeError("helper thread bug")


def watch(ctx: StepContext) -> None:
    fail = int(ctx.params["fail"])
    if fail == 1:
        ctx.daq.add_chunk_listener(_failing_listener)  # type: ignore[union-attr]
    elif fail == 2:
        helper = threading.Thread(target=_failing_thread, name="helper")
        helper.start()
        helper.join()
    ctx.wait(60.0)
    ctx.measure("waited_s", ctx.step_elapsed_s())


PROCEDURE = Procedure(
    id="background_fault",
    version="1.0.0",
    title="Background thread failure (test only)",
    requirements=("TEST-LIFE-001",),
    description=__doc__ or "",
    parameters=(Parameter("fail", "", 0, low=0, high=2, integer=True,
                          description="0 nothing, 1 a DAQ listener raises, 2 a thread raises"),),
    steps=(Step("watch", watch, timeout_s=300.0, duration_s=60.0),),
    measurements=(Measurement("waited_s", "s", "procedure time the step waited"),),
    spec_file="background_fault.spec.toml",
)
