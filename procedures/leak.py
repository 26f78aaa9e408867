"""Leak detection: open the side bleed on a delivering line and time the rig's leak detector.

Method: deliver at ``rate_ml_h`` until the detectors have settled and learnt the healthy line
(``baseline_min``), open the DAQ's leak valve (a bleed before the flow sensor: part of the drug
never reaches the catheter), and wait up to ``max_wait_min`` for the ``leak`` detector (flow below
what the rate predicts AND upstream pressure below its baseline, rig.analysis.detection). Only the leak
detector's alarm counts; any other detector that alarms is named in the measurement detail.

* leak.detected    1 if the leak detector alarmed within the wait, else 0
* leak.latency_min valve opened -> leak alarm, procedure time
"""

from __future__ import annotations

from procedures._fault_detection import fault_detection_procedure, FaultSpec

PROCEDURE = fault_detection_procedure(FaultSpec(
    fault="leak",
    valve="set_leak",
    title="Leak (side bleed) detection and latency",
    requirements=("REQ-DET-LEAK-001", "REQ-DET-LEAK-002"),
    description=__doc__ or "",
    default_wait_min=30.0,
))
