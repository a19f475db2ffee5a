"""Figures outside their possible range are noise, not facts.

A shared machine's run-to-run variation can exceed the effect a bench measures: an
"independent" step that happened to be slower than blocking's gives a negative exposed
time, and a hidden fraction of 6.27 or -1.18 follows. Such a value is flagged instead of
printed as a fact: the table shows "noise" in its cell and the raw value in a note under
the table; the JSON row keeps the raw value and lists the field under "noise".
"""
from __future__ import annotations

INF = float("inf")

# field -> (lowest, highest) possible value, and what makes the range a law
RANGES = {
    "hidden_fraction": ((0.0, 1.0), "a fraction of the communication: between 0 and 1"),
    "bound_hidden_fraction": ((0.0, 1.0), "a fraction of the communication: between 0 and 1"),
    "dependency_bound": ((0.0, 1.0), "a fraction of the communication: between 0 and 1"),
    "exposed_ms": ((0.0, INF), "time waited for communication: not negative"),
    "comm_ms": ((0.0, INF), "communication time: not negative"),
    "efficiency": ((0.0, 1.0), "P ranks at a fixed batch per rank cannot beat 1 rank: at most 1"),
    "wall_efficiency": ((0.0, 1.0), "P ranks at a fixed batch per rank cannot beat 1 rank: at most 1"),
}
EXPLANATION = ("noise: a figure outside its possible range (raw value in the note) is "
               "run-to-run variation larger than the effect it measures; rerun with more "
               "--rounds and --steps, on a quieter machine")


def impossible(field: str, value) -> bool:
    """True when ``value`` cannot be a true value of ``field`` (unknown fields never are)."""
    if field not in RANGES or not isinstance(value, (int, float)):
        return False
    (low, high), _ = RANGES[field]
    return not (low <= value <= high)


def flag(row: dict) -> dict:
    """Add ``row["noise"]``: the fields whose values are impossible (raw values kept)."""
    noisy = [f for f, v in row.items() if impossible(f, v)]
    if noisy:
        row["noise"] = noisy
    else:
        row.pop("noise", None)
    return row


def cell(row: dict, field: str, spec: str, missing: str = "-") -> str:
    """The table's text for ``row[field]``: formatted, "noise" when flagged, ``missing`` when
    absent."""
    if field not in row or row[field] is None:
        return missing
    if field in row.get("noise", ()):
        return "noise"
    return format(row[field], spec)


def notes(rows: list[dict], name) -> list[str]:
    """The lines under a table: each flagged value with its row's name, then the explanation."""
    lines = []
    for row in rows:
        for field in row.get("noise", ()):
            _, law = RANGES[field]
            lines.append(f"  noise: {name(row)}: {field} = {row[field]:.4g} ({law})")
    if lines:
        lines.append("  " + EXPLANATION)
    return lines
