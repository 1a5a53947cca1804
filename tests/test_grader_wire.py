"""The hidden checks' wire (grader/kernel/agent.py) and verdicts (grader/autograde/score.py), without Jupyter:
two peers over a socket pair, the "kernel" in a thread, the "checker" here."""
from __future__ import annotations

import socket
import threading
from typing import Any

import numpy as np
import pytest

from grader.kernel.agent import _OPS, Broken, Encoder, Link, Peer, RemoteClass, Remote, decode
from grader.checks import CheckFailed
from grader.autograde.score import judge


class _KernelFailed(AssertionError):
    pass


def converse(objects: Any, body: Any) -> tuple[Any, Any]:
    """The kernel side hands ``objects`` over in a ``check`` request; ``body(decoded)`` runs on
    the checker side, its return value is the reply. Returns (what the kernel got, body's
    value or exception)."""
    kernel_sock, checker_sock = socket.socketpair()
    kernel = Peer(Link(kernel_sock), exports="any", serves=_OPS, check_failed=_KernelFailed)
    got: dict[str, Any] = {}

    def run_kernel() -> None:
        kernel.begin(1)
        try:
            got["reply"] = kernel.request("check", None, objects, session=1)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            got["reply"] = exc
        finally:
            kernel.end()

    outcome: dict[str, Any] = {}

    def handler(msg: dict[str, Any], buffers: list[bytes]) -> None:
        try:
            outcome["value"] = body(checker.decode(msg.get("a"), buffers))
        except Exception as exc:  # noqa: BLE001
            outcome["value"] = exc
        checker.reply(outcome["value"] if not isinstance(outcome["value"], Exception) else None)

    checker = Peer(Link(checker_sock), exports="callables", serves=("call",), check_failed=CheckFailed,
                   handlers={"check": handler})
    thread = threading.Thread(target=run_kernel)
    thread.start()
    msg, buffers = checker.link.recv()
    checker.begin(msg["s"])
    checker.serve(msg, buffers)
    thread.join(10)
    checker.end()
    kernel_sock.close()
    checker_sock.close()
    return got["reply"], outcome["value"]


def test_a_call_runs_on_the_other_side_and_brings_back_what_it_changed():
    def bump(a, state):
        a += 1
        state["n"] = state.get("n", 0) + 1
        return float(a.sum())

    def body(fn):
        x, state = np.zeros(3), {}
        return fn(x, state), x.tolist(), state

    _, (total, x, state) = converse(bump, body)
    assert (total, x, state) == (3.0, [1.0, 1.0, 1.0], {"n": 1})


def test_a_function_handed_over_calls_back_and_nests():
    def apply(g, x):
        return g(x) * 2

    _, value = converse(apply, lambda fn: fn(lambda v: v + 1, np.arange(3.0)))
    assert value.tolist() == [2.0, 4.0, 6.0]


def test_an_exception_comes_back_by_class_message_and_the_students_line():
    def broken(x):
        raise ValueError(f"bad {x}")

    _, exc = converse(broken, lambda fn: fn(3))
    assert type(exc) is ValueError and str(exc) == "bad 3"
    assert "raise ValueError" in exc.where


def test_objects_stay_behind_handles_and_never_give_dunders():
    class Box:
        def __init__(self):
            self.items = [1, 2]

        def __len__(self):
            return 2

    def body(pair):
        cls, box = pair
        return (type(cls), type(box), box.items, len(box), isinstance(box, cls),
                hasattr(box, "__array_interface__") or hasattr(box, "__array__"))

    _, (cls_kind, box_kind, items, n, is_box, dunder) = converse((Box, Box()), body)
    assert (cls_kind, box_kind, items, n, is_box, dunder) == (RemoteClass, Remote, [1, 2], 2, True, False)


def test_a_handle_dies_with_its_check():
    kept = []

    def body(fn):
        kept.append(fn)
        return fn(1)

    converse(lambda v: v, body)
    with pytest.raises(RuntimeError, match="ended"):
        kept[0](2)


def test_plain_data_round_trips_and_crafted_values_are_refused():
    value = (np.arange(6, dtype=np.float32).reshape(2, 3), np.int64(3), {"a": [1.5, None, "s"]},
             np.dtype("float32"), float("nan"), complex(1, 2), np.random.default_rng(0))
    enc = Encoder(lambda v: pytest.fail(f"not plain: {v!r}"))
    back = decode(enc.encode(value), enc.buffers, lambda t: None)
    assert back[0].dtype == np.float32 and back[0].tolist() == value[0].tolist()
    assert back[1] == 3 and back[2] == {"a": [1.5, None, "s"]} and back[3] == np.float32
    assert np.isnan(back[4]) and back[5] == complex(1, 2)
    assert back[6].standard_normal() == np.random.default_rng(0).standard_normal()
    for crafted, buffers in (({"$a": 0, "dtype": "|O8", "shape": [1]}, [b"\0" * 8]),
                             ({"$a": 0, "dtype": "<f8", "shape": [2]}, [b"\0" * 8]),
                             ({"$ty": "os.system"}, []), ({"$x": "1e999999"}, [])):
        with pytest.raises(ValueError):
            decode(crafted, buffers, lambda t: None)


def test_a_message_that_is_not_the_protocol_breaks_the_conversation():
    a, b = socket.socketpair()
    a.sendall(b"\xff" * 12)
    with pytest.raises(Broken) as info:
        Link(b).recv()
    assert info.value.tampered
    a.close()
    b.close()


SOURCE = "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nfrom grader.checks import m as _c; _c.check_f(f)\n### END HIDDEN TESTS"
OK = {"check": "grader.checks.m.check_f", "ok": True}
FAILED = {"check": "grader.checks.m.check_f", "ok": False, "message": "wrong"}


@pytest.mark.parametrize("errored, verdicts, trusted, flags", [
    (False, [OK], True, []),
    (True, [FAILED], False, []),                 # the failure shows: nbgrader's 0 stands
    (True, [], False, []),                       # the cell failed before its hidden check
    (False, [], False, ["f: tampering: the hidden check check_f did not run or did not report, yet the cell shows no error"]),
    (False, [FAILED], False, ["f: tampering: the hidden check check_f failed, yet the cell shows no error"]),
    (True, [{**FAILED, "tampered": True, "problem": "a malformed value"}], False,
     ["f: tampering: check_f: a malformed value"]),
])
def test_judge(errored, verdicts, trusted, flags):
    verdict = judge("f", SOURCE, errored, verdicts)
    assert (verdict.trusted, verdict.flags, verdict.tampered) == (trusted, flags, bool(flags))


def test_hostile_values_get_an_answer_and_the_conversation_goes_on():
    class Meta(type):
        def __eq__(cls, other):
            return True

        __hash__ = type.__hash__

    class Anything(metaclass=Meta):
        def __eq__(self, other):
            return True

        __hash__ = object.__hash__

    class Liar(np.ndarray):
        def __eq__(self, other):
            return np.ones(np.shape(other), bool)

    def answer(kind):
        return {"class": Anything, "object": Anything(), "subclass": np.zeros(3).view(Liar)}[kind]

    def body(fn):
        return [type(fn(kind)).__name__ for kind in ("class", "object", "subclass")] + [fn("object") is not None]

    _, value = converse(answer, body)
    assert value == ["RemoteClass", "Remote", "Remote", True]


def test_a_call_that_need_not_be_observed_skips_bringing_changes_back():
    def fill(a):
        a[...] = 7.0
        return "filled"

    def body(fn):
        x, y = np.zeros(2), np.zeros(2)
        return fn(x), x.tolist(), fn._peer.call(fn, (y,), {}, observe=False), y.tolist()

    _, value = converse(fill, body)
    assert value == ("filled", [7.0, 7.0], "filled", [0.0, 0.0])
