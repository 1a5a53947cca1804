"""The clean re-run of hidden checks, and the verdict that counts.

A grading kernel records every hidden-check call (see :mod:`grader.checks`): the check's
arguments and, for each call of a student's function, the digest of its inputs, what it
returned or raised and how it changed its arguments, all as plain data. :func:`rerun` replays
those records in a fresh Python process that never ran student code: the same check runs on
the same seeded inputs, and each call of the student's function answers with the recorded
value instead of running anything. So the comparisons, the references, NumPy and the check
itself are the grader's own, whatever the notebook did to its kernel; a record whose inputs
differ from the clean run's (the kernel's NumPy, generator or check was changed) *diverges*.

:func:`judge` then decides each graded cell: nbgrader's score stands only if every hidden
check of the cell reported from the kernel, passed there, passed again in the clean re-run
(or, for checks judged in the kernel, ran on an unchanged kernel). Everything else scores 0
and, where the notebook looks tampered with, is flagged with the reason.

Run as ``python -m grader.replay RECORDS OUT``: RECORDS is written by :func:`write_records`,
OUT receives one JSON verdict per record.
"""
from __future__ import annotations

import builtins
import importlib
import json
import re
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.checks import CheckFailed, Codec, decode, digest

__all__ = ["Record", "rerun", "judge", "CellVerdict", "expected_checks", "write_records", "read_records"]


@dataclass
class Record:
    """One hidden-check call as the kernel reported it (untrusted until re-run)."""

    header: dict[str, Any]
    buffers: list[bytes] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.header.get('module', '?')}.{self.header.get('check', '?')}"

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.buffers) + len(json.dumps(self.header))


# -- records on disk: [header length, header JSON, buffer count, (length, bytes)...] ----------

def write_records(records: Iterable[Record], path: Path) -> None:
    with open(path, "wb") as fh:
        for rec in records:
            head = json.dumps(rec.header).encode()
            fh.write(struct.pack("<Q", len(head)) + head + struct.pack("<I", len(rec.buffers)))
            for data in rec.buffers:
                fh.write(struct.pack("<Q", len(data)))
                fh.write(data)


def read_records(path: Path) -> list[Record]:
    records = []
    with open(path, "rb") as fh:
        while head := fh.read(8):
            header = json.loads(fh.read(struct.unpack("<Q", head)[0]))
            count = struct.unpack("<I", fh.read(4))[0]
            buffers = [fh.read(struct.unpack("<Q", fh.read(8))[0]) for _ in range(count)]
            records.append(Record(header, buffers))
    return records


# -- replaying one record (in the clean process) ------------------------------------------------

class _Diverged(BaseException):
    """The clean re-run asked for something the kernel's record does not hold."""


_RESERVED = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _rebuild(event: Mapping[str, Any]) -> BaseException:
    """The exception a student's function raised in the kernel (same class name and message)."""
    name, message = str(event.get("raise", "Exception")), str(event.get("message", ""))
    if event.get("kind") == "checkfailed":
        return CheckFailed(message)
    cls = getattr(builtins, name, None)
    if event.get("kind") == "builtin" and isinstance(cls, type) and issubclass(cls, BaseException) \
            and cls not in _RESERVED:
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
            pass
    safe = name if name.isidentifier() else "StudentError"
    return type(safe, (Exception,), {})(message)


class _Replay:
    """Answers a check's calls of student functions from a record's events."""

    def __init__(self, events: list[dict[str, Any]], buffers: list[bytes]) -> None:
        self.events, self.buffers, self.pos = events, buffers, 0
        self.functions = 0
        self.calls: dict[int, list[Any]] = {}
        self.diverged: str | None = None

    def diverge(self, why: str) -> None:
        if self.diverged is None:
            self.diverged = why
        raise _Diverged(why)

    def next(self) -> dict[str, Any]:
        if self.pos >= len(self.events):
            self.diverge("the clean re-run called the student's function more often than the notebook did")
        event = self.events[self.pos]
        self.pos += 1
        if not isinstance(event, dict):
            self.diverge("malformed event")
        return event

    def decode(self, tree: Any) -> Any:
        return decode(tree, self.buffers, self.function)

    def function(self, tree: Mapping[str, Any]) -> Any:
        """A reference in a record: a student function (``$f``, numbered in order) or a check's
        function handed to the student (``$cb``: only a placeholder, never called)."""
        if "$cb" in tree:
            return None
        if tree.get("$f") != self.functions:
            self.diverge("functions were numbered differently in the notebook")
        self.functions += 1
        fid = tree["$f"]

        def replayed(*args: Any, **kwargs: Any) -> Any:
            return self.call(fid, args, kwargs)

        return replayed

    def call(self, fid: int, args: tuple, kwargs: dict) -> Any:
        if self.diverged:
            raise _Diverged(self.diverged)
        codec = Codec.numbering()
        key = digest(codec.encode((args, kwargs)), codec.buffers)
        event = self.next()
        if event.get("call") != fid or event.get("in") != key:
            self.diverge(f"call {event.get('n', '?')} of a student function got other inputs in the "
                         "notebook than in a clean run (NumPy, a generator or the check was changed)")
        self.calls[int(event.get("n", -1))] = codec.functions
        while True:
            event = self.next()
            if "cb" not in event:
                break
            number, j = event["cb"]
            handed = self.calls.get(number, [])
            if not 0 <= j < len(handed):
                self.diverge("a call back into the check names no function it was given")
            cb_args, cb_kwargs = self.decode(event["args"])
            try:
                handed[j](*cb_args, **cb_kwargs)
            except _Diverged:
                raise
            except Exception:  # noqa: BLE001 - the student's code saw the same exception
                pass
        if "after" in event:
            _restore((args, kwargs), self.decode(event["after"]), self)
        if "raise" in event:
            raise _rebuild(event)
        if "ret" not in event:
            self.diverge("malformed event")
        return self.decode(event["ret"])


def _restore(target: Any, value: Any, replay: _Replay) -> None:
    """Change ``target`` in place into ``value`` (what the student's function left it as)."""
    import numpy as np

    if type(target) is np.ndarray:
        if type(value) is not np.ndarray or value.shape != target.shape or value.dtype != target.dtype:
            replay.diverge("an argument changed shape or type in the notebook")
        if not np.array_equal(target, value, equal_nan=True):
            target[...] = value
    elif type(target) is np.random.Generator:
        if type(value) is not np.random.Generator:
            replay.diverge("a generator argument was replaced")
        target.bit_generator.state = value.bit_generator.state
    elif isinstance(target, tuple):
        if not isinstance(value, tuple) or len(value) != len(target):
            replay.diverge("an argument changed shape")
        for t, v in zip(target, value):
            _restore(t, v, replay)
    elif type(target) is list and type(value) is list:
        for i, v in enumerate(value):
            if i < len(target) and _mutable(target[i]) and _mutable(v):
                _restore(target[i], v, replay)
            elif i < len(target):
                target[i] = v if v is not None or target[i] is None else target[i]
            else:
                target.append(v)
        del target[len(value):]
    elif isinstance(target, dict) and isinstance(value, dict):
        for key in [k for k in target if k not in value]:
            del target[key]
        for key, v in value.items():
            if key in target and _mutable(target[key]) and _mutable(v):
                _restore(target[key], v, replay)
            elif v is not None or not callable(target.get(key)):
                target[key] = v


def _mutable(value: Any) -> bool:
    import numpy as np

    return type(value) in (np.ndarray, np.random.Generator, list, dict, tuple)


def replay(record: Record) -> dict[str, Any]:
    """The verdict of one record in this (clean) process: ok, message, diverged."""
    header = record.header
    module, name = str(header.get("module", "")), str(header.get("check", ""))
    if not re.fullmatch(r"grader\.checks\.\w+", module) or not re.fullmatch(r"check_\w+", name):
        return {"ok": False, "message": "", "diverged": f"unknown check {module}.{name}"}
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        return {"ok": False, "message": "", "diverged": f"unknown check {module}.{name} ({exc})"}
    state = _Replay(header.get("events") or [], record.buffers)
    try:
        args, kwargs = state.decode(header.get("args"))
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise ValueError("arguments are not (args, kwargs)")
    except (ValueError, TypeError, KeyError, IndexError, _Diverged) as exc:
        return {"ok": False, "message": "", "diverged": state.diverged or f"unreadable record ({exc})"}
    ok, message = True, ""
    try:
        fn(*args, **kwargs)
    except CheckFailed as exc:
        ok, message = False, str(exc)
    except _Diverged:
        ok = False
    if ok and state.diverged is None and state.pos != len(state.events):
        # (a check that fails here stops early; the notebook's, passing, went on calling)
        state.diverged = "the notebook recorded calls of student functions the clean re-run did not make"
    return {"ok": ok and state.diverged is None, "message": message, "diverged": state.diverged}


def main(argv: list[str]) -> int:
    records = read_records(Path(argv[0]))
    verdicts = []
    for record in records:
        try:
            verdicts.append(replay(record))
        except Exception as exc:  # noqa: BLE001 - one bad record must not hide the others
            verdicts.append({"ok": False, "message": "", "diverged": f"re-run failed ({type(exc).__name__}: {exc})"})
    Path(argv[1]).write_text(json.dumps(verdicts), encoding="utf-8")
    return 0


# -- in the grader: run the re-run process, then decide the cells ---------------------------------

def rerun(records: list[Record], course_root: Path, *, env: Mapping[str, str], timeout: float,
          scratch: Path) -> list[dict[str, Any]]:
    """Verdicts of ``records`` (the replayable ones) from a fresh process with ``course_root``
    first on its path; a failed or timed-out re-run gives every record a 'could not re-run'
    verdict."""
    if not records:
        return []
    with tempfile.TemporaryDirectory(dir=scratch, prefix="replay-") as tmp:
        src, out = Path(tmp) / "records.bin", Path(tmp) / "verdicts.json"
        write_records(records, src)
        try:
            proc = subprocess.run([sys.executable, "-m", "grader.replay", str(src), str(out)],
                                  cwd=tmp, env=dict(env), capture_output=True, text=True, timeout=timeout)
            if proc.returncode == 0 and out.exists():
                verdicts = json.loads(out.read_text(encoding="utf-8"))
                if len(verdicts) == len(records):
                    return verdicts
            why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        except subprocess.TimeoutExpired:
            why = f"it took longer than {timeout:.0f} s"
    return [{"ok": False, "message": "", "diverged": None, "error": f"the clean re-run failed: {why}"}
            for _ in records]


_IMPORT = re.compile(r"from\s+grader\.checks\s+import\s+(\w+)(?:\s+as\s+(\w+))?")
_IMPORT_MODULE = re.compile(r"import\s+grader\.checks\.(\w+)\s+as\s+(\w+)")
_CALL = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.(check_\w+)\s*\(")


def expected_checks(source: str) -> list[str]:
    """``grader.checks.<module>.<check>`` names the hidden region(s) of a test cell call."""
    from grader.nb import HIDDEN_BEGIN, HIDDEN_END

    hidden, inside = [], False
    for line in source.splitlines():
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        elif inside:
            hidden.append(line)
    text = "\n".join(hidden)
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


def judge(grade_id: str, source: str, errored: bool, records: list[Record],
          verdicts: Mapping[int, dict[str, Any]]) -> CellVerdict:
    """Decide a graded cell from its hidden checks' records and their clean re-runs.

    ``records``: reported while the cell ran; ``verdicts``: re-run verdicts by record index in
    ``records`` (replayable records only); ``errored``: the cell shows an error (nbgrader scores
    it 0 anyway, so a missing record is no sign of tampering there).
    """
    expected = expected_checks(source)
    if not expected:
        return CellVerdict(trusted=True)
    state: dict[str, str | None] = dict.fromkeys(expected)   # None: no record; "ok"; "failed"
    flags: list[str] = []
    tampered = False

    def fail(name: str, flag: str | None = None, *, tamper: bool = False) -> None:
        nonlocal tampered
        state[name] = "failed"
        tampered = tampered or tamper
        if flag:
            flags.append(f"{grade_id}: {'tampering: ' if tamper else ''}{flag}")

    for i, rec in enumerate(records):
        name = rec.name
        if name not in state:
            continue  # the notebook called a check itself: not graded
        state[name] = state[name] or "ok"
        check, head = name.rsplit(".", 1)[-1], rec.header
        kernel_ok = head.get("ok") is True
        violations = [str(v) for v in head.get("violations") or []]
        verdict = verdicts.get(i, {"ok": False, "error": "it was not re-run"})
        if violations:
            fail(name, "; ".join(violations[:5]), tamper=True)
        elif head.get("mode") != "replay":
            if not kernel_ok:
                fail(name)
        elif verdict.get("diverged"):
            fail(name, f"{check}: {verdict['diverged']}", tamper=True)
        elif verdict.get("error"):
            fail(name, f"{check}: {verdict['error']}")
        elif kernel_ok and not verdict.get("ok"):
            fail(name, f"{check} passed in the notebook but fails in a clean re-run: "
                       f"{verdict.get('message', '')}", tamper=True)
        elif not kernel_ok and verdict.get("ok"):
            fail(name, f"{check} failed in the notebook but passes in a clean re-run; review by hand")
        elif not kernel_ok:
            fail(name)
    missing = [name.rsplit(".", 1)[-1] for name, st in state.items() if st is None]
    if missing and not errored:
        tampered = True
        flags.append(f"{grade_id}: tampering: the hidden check {', '.join(missing)} did not run or did "
                     "not report, yet the cell shows no error")
    return CellVerdict(trusted=not tampered and all(st == "ok" for st in state.values()),
                       flags=flags, tampered=tampered)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
