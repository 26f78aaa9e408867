"""The operator steps every procedure begins with: name the item under test, set up the line.

Why shared: the same entry in every procedure means one answers file serves them all.
"""

from __future__ import annotations

from rig.engine.operator import Entry, Instruction

# Every record names the item under test; the same entry as delivery_check, so answers files match.
ITEM_SERIAL = Entry("item_serial", "Serial number of the pump under test",
                    pattern=r"[A-Za-z0-9][A-Za-z0-9._/-]{0,39}", example="NE1000-SIM-0001")
SETUP_LINE = Instruction("setup", "Prime the line, connect the catheter through the fault valves and "
                                  "place its outlet in the weighing vessel on the balance; close the "
                                  "draft shield.", image="setup_line.svg")


__all__ = ["ITEM_SERIAL", "SETUP_LINE"]
