"""What a pump emulator's own volume counter shows: the volume it *commanded*, per direction.

Why commanded and not the model's real displacement: a real pump counts motor steps (syringe) or
head revolutions (peristaltic) and knows nothing of slippage, so a displacement fault
(``model.pump.displacement_factor`` = 0.8) must show up on the balance, never on the pump's own
counter. Both pump emulators keep one of these and update it whenever they hold the model lock.
"""

from __future__ import annotations

from instruments.sim.model import FluidLine


class DisplacementCounter:
    """Infused/withdrawn volume since the last clear, read off the model's pumped total."""

    def __init__(self, model: FluidLine) -> None:
        self._last_pumped_ml = model.totals.pumped_ml
        self.infused_ml = 0.0
        self.withdrawn_ml = 0.0

    def update(self, model: FluidLine) -> None:
        """Account for what the model pumped since the last update (direction from its sign)."""
        delta_ml = model.totals.pumped_ml - self._last_pumped_ml
        self._last_pumped_ml = model.totals.pumped_ml
        factor = model.displacement()  # the pump counts commanded volume: faults and wear are not in it
        commanded_ml = delta_ml / factor if factor > 0 else 0.0
        if commanded_ml >= 0:
            self.infused_ml += commanded_ml
        else:
            self.withdrawn_ml -= commanded_ml

    def clear(self, *, infused: bool = True, withdrawn: bool = True) -> None:
        if infused:
            self.infused_ml = 0.0
        if withdrawn:
            self.withdrawn_ml = 0.0
