"""Consistency of retention policies across inheritance (global row + per-type overrides).

An override's blank field inherits the global value, so a row can be fine on its own and still
be wrong in force (an override of max TTL 12 h under a global default TTL of 24 h makes every
create of that type without ttl_hours fail). The checks here run on the values in force.
"""

from dataclasses import dataclass

from django.core.exceptions import NON_FIELD_ERRORS

from sessions_app.models import RetentionPolicy, SessionType

# (lower field, upper field, message): the value in force of `lower` must not exceed `upper`'s.
ORDERED_PAIRS = (
    ("default_ttl_hours", "max_ttl_hours", "the default TTL must not exceed the max TTL"),
)


@dataclass(frozen=True)
class Inconsistency:
    session_type: str
    lower: str
    upper: str
    lower_value: int
    upper_value: int
    message: str

    def __str__(self) -> str:
        label = SessionType(self.session_type).label if self.session_type else "Global"
        return (
            f"{label}: {self.message} ({self.lower.replace('_', ' ')} {self.lower_value} > "
            f"{self.upper.replace('_', ' ')} {self.upper_value})"
        )


def _in_force(row: RetentionPolicy | None, base: RetentionPolicy | None) -> dict:
    values = {}
    for name in RetentionPolicy.POLICY_FIELDS:
        own = getattr(row, name) if row is not None else None
        values[name] = own if own is not None else (getattr(base, name) if base else None)
    return values


def find_inconsistencies(rows: list[RetentionPolicy]) -> list[Inconsistency]:
    """Every (type, pair) whose values in force are out of order, given these policy rows."""
    by_type = {row.session_type: row for row in rows}
    base = by_type.get("")
    found = []
    for session_type in ["", *SessionType.values]:
        row = by_type.get(session_type)
        if session_type and row is None:
            continue  # a type without a row is the global row, checked once
        values = _in_force(row, base)
        for lower, upper, message in ORDERED_PAIRS:
            low, high = values[lower], values[upper]
            if low is not None and high is not None and low > high:
                found.append(Inconsistency(session_type, lower, upper, low, high, message))
    return found


def current_inconsistencies() -> list[Inconsistency]:
    """Inconsistencies among the saved rows (the operations page flags these)."""
    return find_inconsistencies(list(RetentionPolicy.objects.all()))


def errors_if_saved(policy: RetentionPolicy) -> dict[str, str]:
    """{field: reason} for inconsistencies that saving `policy` would leave in force.

    An override is checked against the saved global row; the global row against every saved
    override, so a global change cannot silently break an existing override.
    """
    others = [
        row for row in RetentionPolicy.objects.all() if row.session_type != policy.session_type
    ]
    problems = find_inconsistencies([*others, policy])
    if policy.is_global:
        relevant = problems
    else:
        relevant = [p for p in problems if p.session_type == policy.session_type]
    errors: dict[str, str] = {}
    for problem in relevant:
        pair = f"{problem.lower.replace('_', ' ')} {problem.lower_value} > "
        pair += f"{problem.upper.replace('_', ' ')} {problem.upper_value}"
        if policy.is_global and problem.session_type:
            label = SessionType(problem.session_type).label
            errors.setdefault(
                NON_FIELD_ERRORS,
                f"This change makes the {label} override inconsistent: {problem.message} "
                f"({pair} in force). Change that override first.",
            )
        elif policy.is_global:
            errors.setdefault(problem.upper, f"{problem.message} ({pair}).")
        else:
            # Name the field this row sets, so the form shows the error where it can be fixed.
            field = problem.upper if getattr(policy, problem.upper) is not None else problem.lower
            errors.setdefault(
                field,
                f"In force for this type {problem.message}: {pair} "
                f"(blank fields inherit the global default).",
            )
    return errors
