"""Which hidden checks a graded cell runs, and whether nbgrader's score of the cell stands.

The verdict of a hidden check is the checker's (:mod:`grader.kernel.checker`): it ran the check in a
process of its own while the kernel answered its calls. :func:`judge` decides each graded
cell from those verdicts: nbgrader's score stands only if every hidden check of the cell ran
and passed there. A check that did not run although the cell shows no error, one that failed
although the cell shows no error (the notebook caught or hid the failure), a broken protocol
and a check called from anywhere but its own cell are tampering: 0 points and a flag.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["expected_checks", "judge", "CellVerdict"]

_IMPORT = re.compile(r"from\s+grader\.checks\s+import\s+(\w+)(?:\s+as\s+(\w+))?")
_IMPORT_MODULE = re.compile(r"import\s+grader\.checks\.(\w+)\s+as\s+(\w+)")
_CALL = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.(check_\w+)\s*\(")


def expected_checks(source: str) -> list[str]:
    """``grader.checks.<module>.<check>`` names the hidden region(s) of a test cell call."""
    from grader.nb import split_hidden

    text = "\n".join(split_hidden(source)[1])
    aliases = {alias or module: module for module, alias in _IMPORT.findall(text)}
    aliases.update({alias: module for module, alias in _IMPORT_MODULE.findall(text)})
    names = []
    for prefix, check in _CALL.findall(text):
        module = aliases.get(prefix) or (prefix.split(".")[-1] if prefix.startswith("grader.checks.") else None)
        if module:
            names.append(f"grader.checks.{module}.{check}")
    return names


@dataclass
class CellVerdict:
    """What :func:`judge` decided for one graded cell."""

    trusted: bool                    # nbgrader's score may stand
    flags: list[str] = field(default_factory=list)
    tampered: bool = False


def judge(grade_id: str, source: str, errored: bool, verdicts: Iterable[Mapping[str, Any]]) -> CellVerdict:
    """Decide a graded cell from the checker's ``verdicts`` of the checks it ran while the cell
    ran; ``errored``: the cell shows an error (nbgrader scores it 0 anyway, so a check that did
    not run or failed is no sign of tampering there)."""
    expected = expected_checks(source)
    if not expected:
        return CellVerdict(trusted=True)
    pending = list(expected)
    flags: list[str] = []
    ok, tampered = True, False

    def flag(why: str) -> None:
        nonlocal tampered
        tampered = True
        flags.append(f"{grade_id}: tampering: {why}")

    for verdict in verdicts:
        name = str(verdict.get("check", ""))
        if name in pending:
            pending.remove(name)
        check = name.rsplit(".", 1)[-1]
        if verdict.get("ok") is True:
            continue
        ok = False
        if verdict.get("tampered"):
            flag(f"{check}: {verdict.get('problem')}")
        elif not errored:
            flag(f"the hidden check {check} failed, yet the cell shows no error")
    if pending:
        ok = False
        if not errored:
            missing = ", ".join(dict.fromkeys(n.rsplit(".", 1)[-1] for n in pending))
            flag(f"the hidden check {missing} did not run or did not report, yet the cell shows no error")
    return CellVerdict(trusted=ok and not tampered, flags=flags, tampered=tampered)
