"""The DAQ's options as the station file gives them (``[instruments.daq.options]``): sample rate,
chunk size and the channel wiring, with the names of its output roles, and the driver's reading of
that wiring (``wiring()``: the AI channels with their calibration, the kink valve's AO, the valves).

Why a module of its own: the station-file loader, the DAQ driver and the simulated device must
agree on these, and validating a station must not import nidaqmx (about a quarter of a second,
paid by every command that loads rig.toml) just to learn them. ``OPTIONS`` is the one declaration;
the driver checks its own options with it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rig.settings import NAME, Key, Problems, Schema, join, show, type_name

VALVES = ("occlusion_valve", "leak_valve", "disconnect_valve")  # digital lines, high = fault
KINK = "kink_valve"  # analog output, 0..100 % restriction

_PHYSICAL = {
    "ai": re.compile(r"ai\d{1,3}"),
    "ao": re.compile(r"ao\d{1,3}"),
    "do": re.compile(r"port\d{1,2}/line\d{1,2}"),
}


def channel_type(physical: str) -> str | None:
    """"ai", "ao" or "do" for a physical line name without the device ("ai0", "port0/line1")."""
    for ctype, pattern in _PHYSICAL.items():
        if pattern.fullmatch(physical):
            return ctype
    return None


def _nonzero(v: float) -> str | None:
    return None if v != 0 else "0 is not allowed; expected a non-zero number "


_CHANNEL_PHYSICAL = Key("str", required=True, check=lambda v: None if channel_type(v) else (
    f"{show(v)} is not a physical channel; expected \"aiN\", \"aoN\" or \"portN/lineM\" "
    "(without the device name)"))
_CHANNEL_SPECS: dict[str, Schema] = {
    "ai": {
        "physical": _CHANNEL_PHYSICAL,
        "scale_per_volt": Key("number", required=True, check=_nonzero),
        "offset": Key("number", default=0.0),
        "unit": Key("str", required=True),
    },
    "ao": {"physical": _CHANNEL_PHYSICAL, "unit": Key("str")},
    "do": {"physical": _CHANNEL_PHYSICAL, "unit": Key("str")},
}


def _channels(channels: dict[str, Any], path: str, problems: Problems) -> None:
    """Each channel: a valid name, a physical line, the keys of its type, one role per output."""
    lines: dict[str, str] = {}
    for name, table in channels.items():
        where = join(path, name)
        if not NAME.fullmatch(name):
            problems.add(where, f"{show(name)} is not a valid channel name; use lower-case letters, "
                         "digits and _, starting with a letter")
        if not isinstance(table, dict):
            problems.add(where, f"{show(table)} has the wrong type ({type_name(table)}); expected "
                         "a table such as { physical = \"ai0\", scale_per_volt = 1.0, unit = \"V\" }")
            continue
        physical = table.get("physical")
        ctype = channel_type(physical) if isinstance(physical, str) else None
        if ctype is None:
            # Without a valid physical line we cannot tell which keys belong; check only it.
            only = {"physical": physical} if "physical" in table else {}
            problems.table(only, where, {"physical": _CHANNEL_PHYSICAL})
            continue
        problems.table(table, where, _CHANNEL_SPECS[ctype])
        role = _role_problem(name, ctype)
        if role:
            problems.add(f"{where}.physical", f"{show(physical)} {role}")
        if physical in lines:
            problems.add(f"{where}.physical", f"{show(physical)} is already used by channel "
                         f"{show(lines[physical])}; each channel needs its own physical line")
        else:
            lines[physical] = name


def _role_problem(name: str, ctype: str) -> str | None:
    """Outputs drive the fault valves, so their channel names say which valve (the driver's rule)."""
    if ctype == "ao" and name != KINK:
        return (f"is an analog output; the DAQ driver drives only the channel named {show(KINK)} "
                "from an AO (0..10 V = 0..100 % restriction)")
    if ctype == "do" and name not in VALVES:
        return ("is a digital line; the DAQ driver drives only valves named "
                + ", ".join(show(v) for v in VALVES))
    return None


# The options of the nidaqmx driver (instruments.daq.Daq).
OPTIONS: Schema = {
    "sample_rate_hz": Key("number", default=100.0, low=1, high=250_000, unit="Hz"),
    "chunk_samples": Key("int", low=1, high=1_000_000, unit="samples"),  # default: 0.1 s of samples
    "channels": Key("table", validate=_channels),
}


class DaqConfigError(ValueError):
    """The DAQ's options table cannot be used (names the field and what is allowed)."""


LATEST_KEYS = {  # what procedures and the live display ask for
    "pressure_upstream": "pressure_upstream_kpa",
    "pressure_downstream": "pressure_downstream_kpa",
    "flow_sensor": "flow_ul_min",
}


@dataclass(frozen=True)
class AiChannel:
    """One analog input as wired: read in volts, scaled to ``unit`` with the station's calibration."""

    name: str
    physical: str
    scale_per_volt: float
    offset: float
    unit: str

    @property
    def latest_key(self) -> str:
        slug = self.unit.lower().replace("µ", "u").replace("/", "_").replace(" ", "")
        return LATEST_KEYS.get(self.name, f"{self.name}_{slug}")


@dataclass(frozen=True)
class Wiring:
    """What the driver drives: the AI channels it reads, the kink valve's AO and the valves' lines."""

    ai_channels: list[AiChannel]
    kink_physical: str | None
    valve_physical: dict[str, str]


def wiring(instrument: str, channels: dict[str, Any]) -> Wiring:
    """The driver's reading of ``[instruments.<instrument>.options.channels]``.

    Why here and not in the driver: the rules for which line may drive which role are this
    module's (``_role_problem``); the driver reads the table the same way whether or not the
    station loader has checked it (direct construction in tests and benchmarks).
    """
    ai: list[AiChannel] = []
    kink: str | None = None
    valves: dict[str, str] = {}
    for ch_name, spec in channels.items():
        where = f"instruments.{instrument}.options.channels.{ch_name}"
        physical = str((spec or {}).get("physical", ""))
        if physical.startswith("ai"):
            try:
                scale = float(spec.get("scale_per_volt", 1.0))
                offset = float(spec.get("offset", 0.0))
            except (TypeError, ValueError):
                raise DaqConfigError(f"{where}: scale_per_volt and offset must be numbers") from None
            if scale == 0:
                raise DaqConfigError(f"{where}.scale_per_volt must be non-zero")
            ai.append(AiChannel(ch_name, physical, scale, offset, str(spec.get("unit", "V"))))
        elif ch_name == KINK and physical.startswith("ao"):
            kink = physical
        elif ch_name in VALVES and physical.startswith("port"):
            valves[ch_name] = physical
        else:
            raise DaqConfigError(
                f"{where}: physical {physical!r} is not usable here; expected \"aiN\" for an input, "
                f"\"aoN\" for {KINK}, or \"portN/lineM\" for {', '.join(VALVES)}"
            )
    return Wiring(ai, kink, valves)


__all__ = ["KINK", "OPTIONS", "VALVES", "AiChannel", "DaqConfigError", "Wiring", "channel_type", "wiring"]
