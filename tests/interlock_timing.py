"""Test-only procedure for tests/test_interlock_timing.py: deliver, pinch the line shut with the
rig's kink valve, and wait — the overpressure interlock must end the run.

Why a procedure and not a unit test of the interlock: the question is whether *virtual time* lets
the interlock act as early as real time does, and that depends on the whole chain the runner
builds (clock slices, the clock's guard, the paced DAQ reader, the interlock, the pump driver).
The wait uses the default tick (1 s real, 10 s virtual) on purpose: a procedure that waits
coarsely must not make the interlock late.
"""

from __future__ import annotations

from rig.engine.context import StepContext
from rig.engine.procedure import Parameter, Procedure, Step

SETTLE_S = 4.0
HOLD_S = 60.0


def overpressure(ctx: StepContext) -> None:
    assert ctx.daq is not None
    ctx.pump.stop()
    ctx.pump.set_rate_ml_h(ctx.params["rate_ml_h"])
    ctx.pump.start()
    ctx.wait(SETTLE_S)
    t0 = ctx.acquisition_started_s()
    ctx.daq.set_kink_pct(100.0)
    t_kink = ctx.now_s()
    ctx.event("kink", "kink valve closed (100 %)", t_kink_s=t_kink, acquisition_started_s=t0)
    ctx.wait(HOLD_S)


PROCEDURE = Procedure(
    id="interlock_timing",
    version="1.0.0",
    title="Overpressure interlock timing (test only)",
    requirements=("TEST-INTERLOCK-TIMING",),
    description=__doc__ or "",
    parameters=(Parameter("rate_ml_h", "mL/h", 30.0, low=1.0, high=100.0, description="delivery rate"),),
    steps=(Step("overpressure", overpressure, timeout_s=SETTLE_S + HOLD_S + 60.0),),
    measurements=(),
    spec_file="interlock_timing.spec.toml",
)
