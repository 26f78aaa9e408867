"""Applies the fault matrix's mutation named in $RIG_FAULT_MATRIX_SABOTAGE at interpreter start-up.

Only on PYTHONPATH of children that tests/faults/sabotage.child_env starts for a mutation check.
"""

import os

if os.environ.get("RIG_FAULT_MATRIX_SABOTAGE"):
    from faults import sabotage

    sabotage.apply(os.environ["RIG_FAULT_MATRIX_SABOTAGE"])
