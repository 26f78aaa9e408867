"""Signing policy shared by `rig report sign` (refuse early) and `rig report verify` (enforce).

Why one module: a rule that signing applies but verification does not is no rule at all.

- Order: generated_by (station) < performed_by < reviewed_by < approved_by; a later signature may
  not have a lower rank than an earlier one (nobody performs after the review).
- Separation of duties: a reviewer or approver may not be a performer of the same report, and a
  signer holds one role per bundle (nobody signs twice, in the same role or another).
- Identity: performed_by is signed by the recorded operator (printed name = the run's operator).
- Verdict: every statement carries the bundle's verdict. A run that did not reach a decision
  (INCOMPLETE, ABORTED, ERROR) can only be signed as generated_by or reviewed_by: there is no
  result to perform-sign or approve. For any verdict other than PASS the meaning may not claim a
  pass, so no signature on such a bundle reads as a pass.
"""

from __future__ import annotations

import re
from typing import Any

from reports.key_registry import ROLES

RANK = {role: rank for rank, role in enumerate(ROLES)}
UNDECIDED_VERDICTS = ("INCOMPLETE", "ABORTED", "ERROR")
_CLAIMS_PASS = re.compile(r"\bpass(?:es|ed|ing)?\b", re.IGNORECASE)
_MEANINGS = {
    "generated_by": "Generated automatically by this station from the run record",
    "performed_by": "I performed this verification run as recorded",
    "reviewed_by": "I reviewed this report and the run record",
    "approved_by": "I approve this report",
}


def default_meaning(role: str, verdict: str) -> str:
    """The 21 CFR 11.50 meaning printed with the signature; it always names the verdict."""
    return f"{_MEANINGS[role]}; verdict {verdict}"


def verdict_problem(role: str, verdict: str) -> str | None:
    if verdict in UNDECIDED_VERDICTS and role not in ("generated_by", "reviewed_by"):
        return f"a {verdict} run has no result to sign as {role}; only generated_by or reviewed_by"
    return None


def meaning_problem(meaning: str, verdict: str) -> str | None:
    if not meaning.strip():
        return "the meaning of the signature is empty"
    if verdict != "PASS" and _CLAIMS_PASS.search(meaning):
        return f"the meaning {meaning!r} claims a pass but the verdict is {verdict}"
    return None


def order_problems(statements: list[dict[str, Any]]) -> list[list[str]]:
    """Per statement (same order), the order and separation-of-duty problems."""
    problems: list[list[str]] = []
    performers: set[str] = set()
    roles_of: dict[str, str] = {}
    highest = -1
    for s in statements:
        mine: list[str] = []
        role, signer = s.get("role"), s.get("signer_id")
        if signer is not None and str(signer) in roles_of:
            mine.append(f"{signer} already signed this bundle as {roles_of[str(signer)]}; "
                        "a signer holds one role per bundle")
        elif signer is not None:
            roles_of[str(signer)] = str(role)
        rank = RANK.get(str(role), -1)
        if rank < highest:
            mine.append(f"{role} signature comes after the {ROLES[highest]} signature (order is {' < '.join(ROLES)})")
        highest = max(highest, rank)
        if role == "performed_by":
            performers.add(str(signer))
        elif role in ("reviewed_by", "approved_by") and signer in performers:
            mine.append(f"{signer} performed this run and cannot also sign it as {role}")
        problems.append(mine)
    return problems


def operator_problem(statement: dict[str, Any], operator: Any) -> str | None:
    """performed_by must be the recorded operator's own signature."""
    if statement.get("role") != "performed_by":
        return None
    if not isinstance(operator, str) or not operator.strip():
        return "performed_by: the run recorded no operator, so nobody can sign that they performed it"
    if statement.get("printed_name") != operator:
        return (f"performed_by is signed by {statement.get('printed_name')} but the run was operated by "
                f"{operator}; only the recorded operator may sign performed_by")
    return None
