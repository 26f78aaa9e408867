"""Catheter disconnect detection: open the disconnect path and time the disconnect detector.

Method: deliver at ``rate_ml_h`` until the detectors have settled and learnt the healthy line
(``baseline_min``), open the DAQ's disconnect valve (the catheter end is open to air: the flow
sensor sees almost nothing and the catheter's ~1.5 kPa CSF back-pressure is lost), and wait up to
``max_wait_min`` for the ``disconnect`` detector. Only the disconnect detector's alarm counts;
any other detector that alarms is named in the measurement detail.

* disconnect.detected    1 if the disconnect detector alarmed within the wait, else 0
* disconnect.latency_min valve opened -> disconnect alarm, procedure time
"""

from __future__ import annotations

from procedures._fault_detection import fault_detection_procedure, FaultSpec

PROCEDURE = fault_detection_procedure(FaultSpec(
    fault="disconnect",
    valve="set_disconnect",
    title="Catheter disconnect detection and latency",
    requirements=("REQ-DET-DISC-001", "REQ-DET-DISC-002"),
    description=__doc__ or "",
    default_wait_min=30.0,
))
