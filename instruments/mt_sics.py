"""Mettler Toledo precision balance over MT-SICS (level 0/1), the gravimetric reference of the rig.

Protocol source: Mettler Toledo "MT-SICS Interface Commands" reference manuals (e.g. 11780711 for
Excellence/New Classic balances, the XPR/XSR and weigh-module editions), sections "Command
formats", "Format of responses with weight value" and the level 0/1 command pages:

* A command is upper-case ASCII, parameters separated by a blank, closed by CR LF.
* A reply is ``<ID> <Status> [data]`` CR LF. ``ID`` repeats the command (``S`` for both ``S``
  and ``SI``); ``Status`` is one character.
* Weight replies: ``S S     100.00 g`` -- ID, blank, status (``S`` stable, ``D`` dynamic), blank,
  the weight right-aligned in a 10-character field with the sign directly before the first
  digit, blank, unit.
* ``S``: stable weight; ``S I`` = not executable (busy, or stability not reached within the
  balance's stability timeout); ``S +`` overload; ``S -`` underload. ``SI``: the weight now,
  stable or not (``S S`` / ``S D``).
* ``Z``: ``Z A`` zeroed; ``Z I`` busy/not stable; ``Z +`` / ``Z -`` upper/lower limit of the
  zero-setting range exceeded. ``T``: ``T S <tare> g``; ``T I``; ``T +`` / ``T -`` taring range.
* ``I2 A "<model> <capacity> <unit>"``, ``I3 A "<software version> <type definition no>"``,
  ``I4 A "<serial number>"``.
* General errors, sent instead of any reply: ``ES`` syntax error (command not recognised),
  ``ET`` transmission error (faulty bytes, e.g. parity), ``EL`` logical error (cannot execute).

The driver parses whitespace tolerantly (field widths differ between balance families) but
checks the ID, status and number strictly, so a stray line is MalformedReply, never a weight.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from instruments.errors import InstrumentReportedError, MalformedReply
from instruments.visa_instrument import Identity, VisaInstrument

# One reply line: ID, one status character, optional data.
_REPLY = re.compile(r"^(?P<id>[A-Z][A-Z0-9]*) (?P<status>[A-Z+\-])(?: +(?P<data>.*))?$")
# Weight data after the status: the (padded) number and its unit.
_WEIGHT = re.compile(r"^ *(?P<value>-?\d+(?:\.\d+)?) (?P<unit>[A-Za-z]{1,3})$")
_QUOTED = re.compile(r'^"(?P<text>[^"]*)"$')

GENERAL_ERRORS = {
    "ES": "syntax error: the balance did not recognise the command",
    "ET": "transmission error: the balance received faulty bytes (parity error or interface break)",
    "EL": "logical error: the balance cannot execute the command (parameter not allowed)",
}

UNIT_TO_G = {"g": 1.0, "mg": 1e-3, "kg": 1e3}


class BalanceUnstable(InstrumentReportedError):
    """No stable weight within the balance's stability timeout (``S I``, ``Z I``, ``T I``).

    Expected while fluid is still landing or the cell is settling: the caller lets time pass
    (virtual or real) and asks again, or uses the immediate reading.
    """


class BalanceOverload(InstrumentReportedError):
    """The load is above the weighing range (``S +``): the reading is meaningless."""


class BalanceUnderload(InstrumentReportedError):
    """The load is below the weighing range (``S -``): typically the weighing pan is missing."""


# Per command: the reply ID, the statuses that carry a result, and what each error status means.
_ERROR_STATUS: dict[str, dict[str, tuple[type[InstrumentReportedError], str]]] = {
    "S": {
        "I": (BalanceUnstable, "no stable weight within the stability timeout (or balance busy)"),
        "+": (BalanceOverload, "overload: load above the weighing range"),
        "-": (BalanceUnderload, "underload: load below the weighing range (weighing pan missing?)"),
    },
    "SI": {
        "I": (InstrumentReportedError, "not executable: the balance is busy (e.g. taring)"),
        "+": (BalanceOverload, "overload: load above the weighing range"),
        "-": (BalanceUnderload, "underload: load below the weighing range (weighing pan missing?)"),
    },
    "Z": {
        "I": (BalanceUnstable, "cannot zero: no stable weight within the stability timeout"),
        "+": (
            InstrumentReportedError,
            "upper limit of the zero-setting range exceeded (use tare with a vessel on the pan)",
        ),
        "-": (InstrumentReportedError, "lower limit of the zero-setting range exceeded"),
    },
    "T": {
        "I": (BalanceUnstable, "cannot tare: no stable weight within the stability timeout"),
        "+": (BalanceOverload, "upper limit of the taring range exceeded"),
        "-": (InstrumentReportedError, "lower limit of the taring range exceeded"),
    },
}
_INFO_ERRORS = {"I": (InstrumentReportedError, "not executable: the balance is busy")}
_REPLY_ID = {"S": "S", "SI": "S", "Z": "Z", "T": "T", "I2": "I2", "I3": "I3", "I4": "I4"}
_OK_STATUS = {"S": "S", "SI": "SD", "Z": "A", "T": "S", "I2": "A", "I3": "A", "I4": "A"}


class MTSicsBalance(VisaInstrument):
    """A Mettler Toledo balance speaking MT-SICS on a serial port (pyvisa ``ASRL…::INSTR``)."""

    kind: ClassVar[str] = "balance"
    write_termination: ClassVar[bytes] = b"\r\n"
    read_termination: ClassVar[str] = "\r\n"
    baud_rate: ClassVar[int | None] = 9600  # MT-SICS factory default, 8N1

    # -- reply checking -----------------------------------------------------------------------

    def _payload(self, cmd: str, reply: str) -> str:
        """Return ``"<status> <data>"`` of a good reply; raise on errors and garbage.

        Weight replies are fully validated here so that a garbled one is retried by ``query``.
        """
        if reply in GENERAL_ERRORS:
            raise InstrumentReportedError(self.name, cmd, f"{reply} {GENERAL_ERRORS[reply]}")
        match = _REPLY.match(reply)
        if match is None or match["id"] != _REPLY_ID.get(cmd, cmd.split(" ")[0]):
            raise MalformedReply(self.name, cmd, f"not an MT-SICS reply to {cmd}: {reply!r}")
        status, data = match["status"], match["data"] or ""
        errors = _ERROR_STATUS.get(cmd, _INFO_ERRORS)
        if status in errors and not data:
            cls, meaning = errors[status]
            raise cls(self.name, cmd, f"{reply.strip()!r}: {meaning}")
        if status not in _OK_STATUS.get(cmd, "A"):
            raise MalformedReply(self.name, cmd, f"unexpected status {status!r} in {reply!r}")
        if cmd in ("S", "SI", "T"):
            self._grams(cmd, data)
        elif cmd.startswith("I") and _QUOTED.match(data) is None:
            raise MalformedReply(self.name, cmd, f"expected a quoted text in {reply!r}")
        elif cmd == "Z" and data:
            raise MalformedReply(self.name, cmd, f"unexpected data in {reply!r}")
        return f"{status} {data}"

    def _grams(self, cmd: str, data: str) -> float:
        match = _WEIGHT.match(data)
        if match is None:
            raise MalformedReply(self.name, cmd, f"not a weight value: {data!r}")
        unit = match["unit"]
        if unit not in UNIT_TO_G:
            raise MalformedReply(
                self.name, cmd, f"weight unit {unit!r} not supported (set the balance to g, mg or kg)"
            )
        return float(match["value"]) * UNIT_TO_G[unit]

    def _text(self, cmd: str) -> str:
        """The quoted text of an ``I2``/``I3``/``I4`` reply."""
        data = self.query(cmd)[2:]
        return _QUOTED.match(data)["text"]  # type: ignore[index]  # validated in _payload

    # -- weighing -----------------------------------------------------------------------------

    def read_mass_g(self) -> float:
        """The stable net mass (``S``). Raises BalanceUnstable if the balance does not settle
        within its stability timeout, BalanceOverload / BalanceUnderload out of range."""
        reply = self.query("S")
        return self._grams("S", reply[2:])

    def read_mass_immediate_g(self) -> tuple[float, bool]:
        """The net mass now, settled or not (``SI``), and whether the balance calls it stable.

        Why this exists: while fluid keeps landing the cell rarely settles, so flow measurement
        samples the immediate value on a fixed schedule.
        """
        reply = self.query("SI")
        return self._grams("SI", reply[2:]), reply[0] == "S"

    def zero(self) -> None:
        """Set a new zero point (``Z``); only within the zero-setting range (an empty pan).
        A vessel on the pan is taken out with ``tare`` instead."""
        self.command("Z")

    def tare(self) -> float:
        """Store the current stable gross load as the tare (``T``) and return it in grams."""
        reply = self.command("T")
        return self._grams("T", reply[2:])

    # -- identity and safety ------------------------------------------------------------------

    def serial_number(self) -> str:
        return self._text("I4")

    def identify(self) -> Identity:
        """Model from ``I2`` (its text is model, capacity, unit), serial ``I4``, software ``I3``."""
        balance_data = self._text("I2").split()
        model = " ".join(balance_data[:-2]) if len(balance_data) > 2 else " ".join(balance_data)
        return Identity(model=model, serial=self.serial_number(), firmware=self._text("I3"))

    def safe_state(self) -> dict[str, Any]:
        """A balance has no hazardous state (no motion, no fluid path, no outputs), so there is
        nothing to switch off. What the runner needs to know is that it still answers: read the
        immediate weight and report it. Out-of-range loads are reported, not raised, because
        they are not a hazard; a silent or garbled balance still raises."""
        try:
            mass_g, stable = self.read_mass_immediate_g()
        except (BalanceOverload, BalanceUnderload) as exc:
            return {"responding": True, "mass_g": None, "stable": False, "out_of_range": exc.detail}
        return {"responding": True, "mass_g": mass_g, "stable": stable, "out_of_range": None}


__all__ = [
    "BalanceOverload",
    "BalanceUnderload",
    "BalanceUnstable",
    "MTSicsBalance",
]
