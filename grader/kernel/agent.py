"""The hidden checks' wire: plain data, framed messages and calls between the grading kernel and
the checker, a clean process that holds the checks (:mod:`grader.kernel.checker`).

A grading kernel holds no check, no reference and no tolerance. The grader sends this file's
source into the kernel as one silent cell (:func:`arm`); from then on ``grader.checks`` there
is a stand-in whose ``check_<name>(answer)`` asks the checker to run that check and waits.
The checker runs the real check; each time it calls the student's function (or a method or
attribute of the student's object) the request comes back here, runs, and the answer goes
back as plain data. The verdict is the checker's; the kernel only hears pass or fail.

Both sides speak one protocol, :class:`Peer`:

- values travel as a JSON tree plus byte buffers (:class:`Encoder`, :func:`decode`): exact
  ``numpy.ndarray`` of a numeric dtype, NumPy scalars and dtypes, Python numbers and strings,
  tuples, lists, dicts, ``types.SimpleNamespace``, NumPy generators, the number types;
- any other object stays where it lives and travels as a handle: ``{"$e": n}`` for an object
  the sender exports, ``{"$r": n}`` for one the receiver exported to it earlier. A handle is
  valid for one check (a *session*);
- a request (``call``, ``getattr``, ``len``, ``list``, ``getitem``, ``bool``, ``isinstance``,
  ``global``, ``patch``, ``unpatch``, or the kernel's ``check``) is answered by ``return`` or
  ``raise``; while waiting,
  a side serves the other's requests (a student's function calling a function the check
  handed it), so calls nest both ways. A call that changed its arguments sends them back
  (``after``) and the caller changes its own copies the same way.

The kernel side runs only the student's code and this file's; whatever the student's code does
to it can change what the kernel answers, never what the checker decides.

This module is stdlib and NumPy only: it runs inside the kernel as source.
"""
from __future__ import annotations

import builtins
import contextlib
import json
import math
import os
import select
import signal
import socket
import struct
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: NumPy dtype kinds that travel: bool, signed and unsigned integers, floats, complex.
ARRAY_KINDS = "biufc"
#: Most bytes of one message (the largest graded answers are a few MB).
MESSAGE_LIMIT = 512 << 20
GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_MAX_DEPTH = 40
_FRAME = struct.Struct("<QI")
_LENGTH = struct.Struct("<Q")
#: The file name of this code in the kernel (frames of it are not the student's).
AGENT_FILE = "<grader agent>"


class Broken(BaseException):
    """The conversation cannot go on: the other side went away (``lost``), interrupted the
    check (``abort``) or sent something that is not the protocol (``tampered``). Not an
    ``Exception``: no check or student ``except Exception`` swallows it."""

    def __init__(self, why: str, *, tampered: bool = False, kind: str = "lost") -> None:
        super().__init__(why)
        self.why, self.kind = why, "tampered" if tampered else kind

    @property
    def tampered(self) -> bool:
        return self.kind == "tampered"


class TooLarge(Exception):
    """The values to send exceed :data:`MESSAGE_LIMIT`."""


# -- plain data ---------------------------------------------------------------------------------------

class Encoder:
    """Encodes a value as a JSON-able tree whose arrays go to ``buffers``; ``ref(value)`` gives
    the tree of anything that is not plain data (a handle)."""

    def __init__(self, ref: Callable[[Any], Any]) -> None:
        self.buffers: list[bytes] = []
        self.size = 0
        self.ref = ref

    def _buffer(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > MESSAGE_LIMIT:
            raise TooLarge(f"more than {MESSAGE_LIMIT >> 20} MB")
        self.buffers.append(data)
        return len(self.buffers) - 1

    def encode(self, value: Any, depth: int = 0) -> Any:
        t = type(value)  # identity tests only: a notebook's class may override == (even on its metaclass)
        if value is None or t is str or t is int or t is bool:
            return value
        if t is float:
            return value if value == value and abs(value) != float("inf") else {"$x": repr(value)}
        if depth > _MAX_DEPTH:
            raise TooLarge("nested more than 40 levels deep")
        if t is tuple:
            return self._items(value, depth)
        if t is list:
            return [self.encode(v, depth + 1) for v in value]
        np = _numpy()
        if np is not None and t is np.ndarray and value.dtype.kind in ARRAY_KINDS and value.dtype.fields is None:
            data = np.ascontiguousarray(value).tobytes()
            return {"$a": self._buffer(data), "dtype": value.dtype.str, "shape": list(value.shape)}
        if t is dict:
            return self._pairs(value, depth)
        if t is types.SimpleNamespace:
            return {"$ns": [[k, self.encode(v, depth + 1)] for k, v in vars(value).items()]}
        if t is complex:
            return {"$c": [self.encode(value.real), self.encode(value.imag)]}
        if np is not None:
            if isinstance(value, np.generic) and t.__module__ == "numpy" and value.dtype.kind in ARRAY_KINDS:
                return {"$s": self._buffer(value.tobytes()), "dtype": value.dtype.str}
            if isinstance(value, np.dtype) and value.kind in ARRAY_KINDS and value.fields is None:
                return {"$dt": value.str}
            if t is np.random.Generator and type(value.bit_generator).__name__ in GENERATORS:
                return {"$g": self.encode(value.bit_generator.state, depth + 1)}
        if isinstance(value, tuple) and hasattr(t, "_fields"):  # namedtuples
            return self._items(value, depth)
        if isinstance(value, dict) and t.__module__ == "collections":  # OrderedDict, defaultdict
            return self._pairs(value, depth)
        if any(value is k for k in (bool, int, float, complex)):
            return {"$ty": f"builtins.{value.__name__}"}
        if np is not None and isinstance(value, type) and issubclass(value, np.generic) \
                and value.__module__ == "numpy":
            return {"$ty": f"numpy.{value.__name__}"}
        return self.ref(value)

    def _items(self, value: tuple, depth: int) -> Any:
        return {"$t": [self.encode(v, depth + 1) for v in value]}

    def _pairs(self, value: dict, depth: int) -> Any:
        return {"$d": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}


_NUMPY: Any = None


def _numpy() -> Any:
    """NumPy once something imported it (the kernel's notebook may not have yet)."""
    global _NUMPY
    if _NUMPY is None:
        _NUMPY = sys.modules.get("numpy")
    return _NUMPY


def decode(tree: Any, buffers: list[bytes], ref: Callable[[dict[str, Any]], Any]) -> Any:
    """Inverse of :meth:`Encoder.encode`; ``ref(tree)`` resolves handles. Validates every
    array (dtype kind, size), so a crafted message cannot smuggle objects in."""
    t = type(tree)
    if tree is None or t is str or t is int or t is float or t is bool:
        return tree
    if t is list:
        return [decode(v, buffers, ref) for v in tree]
    if t is not dict or not tree or len(tree) > 3:
        raise ValueError("malformed value")
    tag = next(iter(tree))  # the encoder writes the tag first
    if tag == "$a" or tag == "$s":
        return _array(tree, buffers, scalar=tag == "$s")
    if tag == "$t":
        return tuple(decode(v, buffers, ref) for v in tree["$t"])
    if tag == "$d":
        return {decode(k, buffers, ref): decode(v, buffers, ref) for k, v in tree["$d"]}
    if tag == "$e" or tag == "$r":
        return ref(tree)
    if tag == "$ns":
        return types.SimpleNamespace(**{str(k): decode(v, buffers, ref) for k, v in tree["$ns"]})
    if len(tree) != 1:
        raise ValueError("malformed value")
    import numpy as np

    if tag == "$x":
        if tree["$x"] not in ("nan", "inf", "-inf"):
            raise ValueError("malformed float")
        return float(tree["$x"])
    if tag == "$c":
        re, im = (decode(v, buffers, ref) for v in tree["$c"])
        return complex(re, im)
    if tag == "$dt":
        dtype = np.dtype(tree["$dt"])
        if dtype.kind not in ARRAY_KINDS or dtype.hasobject:
            raise ValueError(f"dtype {dtype} is not plain data")
        return dtype
    if tag == "$g":
        state = decode(tree["$g"], buffers, ref)
        if not isinstance(state, dict) or state.get("bit_generator") not in GENERATORS:
            raise ValueError("unknown random generator")
        gen = np.random.Generator(getattr(np.random, state["bit_generator"])())
        gen.bit_generator.state = state
        return gen
    if tag == "$ty":
        module, _, name = str(tree["$ty"]).partition(".")
        value = getattr(builtins if module == "builtins" else np, name, None) if module in ("builtins", "numpy") else None
        if not isinstance(value, type) or not (value in (bool, int, float, complex) or issubclass(value, np.generic)):
            raise ValueError(f"unknown type {tree['$ty']!r}")
        return value
    raise ValueError("malformed value")


def _array(tree: dict[str, Any], buffers: list[bytes], *, scalar: bool) -> Any:
    import numpy as np

    dtype = np.dtype(tree["dtype"])
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.hasobject:
        raise ValueError(f"dtype {dtype} is not plain data")
    data = buffers[tree["$s" if scalar else "$a"]]
    shape = tuple(int(n) for n in tree.get("shape", ()))
    if any(n < 0 for n in shape) or len(data) != dtype.itemsize * math.prod(shape):
        raise ValueError("array size does not match its buffer")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return arr[()] if scalar else arr


def restore(target: Any, value: Any) -> None:
    """Change ``target`` in place into ``value``: what a call on the other side left its copy
    of ``target`` as (arrays, generators, lists and dicts, inside tuples too)."""
    import numpy as np

    if type(target) is np.ndarray:
        if type(value) is not np.ndarray or value.shape != target.shape or value.dtype != target.dtype:
            raise ValueError("an argument changed its shape or type")
        if target.flags.writeable and not np.array_equal(target, value, equal_nan=True):
            target[...] = value
    elif type(target) is np.random.Generator:
        if type(value) is not np.random.Generator:
            raise ValueError("a generator argument was replaced")
        target.bit_generator.state = value.bit_generator.state
    elif isinstance(target, tuple):
        if not isinstance(value, tuple) or len(value) != len(target):
            raise ValueError("an argument changed its length")
        for t, v in zip(target, value):
            restore(t, v)
    elif type(target) is list and type(value) is list:
        for i, v in enumerate(value):
            if i < len(target) and _mutable(target[i]) and _mutable(v):
                restore(target[i], v)
            elif i < len(target):
                target[i] = v
            else:
                target.append(v)
        del target[len(value):]
    elif isinstance(target, dict) and isinstance(value, dict):
        for key in [k for k in target if k not in value]:
            del target[key]
        for key, v in value.items():
            if key in target and _mutable(target[key]) and _mutable(v):
                restore(target[key], v)
            else:
                target[key] = v


def _mutable(value: Any) -> bool:
    np = sys.modules["numpy"]
    return type(value) in (np.ndarray, np.random.Generator, list, dict, tuple)


# -- exceptions across the wire ----------------------------------------------------------------------

_RESERVED = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _library_dirs() -> tuple[str, ...]:
    # the whole grader package (this file is in grader/kernel/): frames in checks/ are not the student's
    grader_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) if "__file__" in globals() else ""
    dirs = {sys.prefix, sys.base_prefix, grader_dir}
    course = sys.modules.get("course")
    if course is not None and getattr(course, "__file__", None):
        dirs.add(os.path.dirname(os.path.abspath(course.__file__)))
    return tuple(os.path.join(d, "") for d in dirs if d)


def where(exc: BaseException) -> str:
    """' (line 3: `return x / 0`)' for the innermost frame of the student's own code."""
    import traceback

    library = _library_dirs()
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename != AGENT_FILE and not os.path.abspath(f.filename).startswith(library)]
    if not frames or not frames[-1].line:
        return ""
    return f" (line {frames[-1].lineno}: `{frames[-1].line.strip()}`)"


def exception_event(exc: BaseException) -> dict[str, Any]:
    """How an exception travels: its class name, whether it is a builtin or a check failure,
    its message and the raising line of the student's code."""
    try:
        t = type(exc)
        name = str(t.__name__)
        kind = ("checkfailed" if name == "CheckFailed" and isinstance(exc, AssertionError) else
                "builtin" if getattr(builtins, name, None) is t else "other")
        return {"raise": name, "kind": kind, "message": str(exc)[:2000], "where": where(exc)[:500]}
    except Exception:  # noqa: BLE001 - a student's exception may fail even to print
        return {"raise": "Exception", "kind": "other", "message": "?", "where": ""}


def rebuild(event: dict[str, Any], check_failed: type[BaseException]) -> BaseException:
    """The exception an event describes, raised on this side (same class name and message;
    its ``where`` attribute says the student's line). Never KeyboardInterrupt or SystemExit."""
    name, message = str(event.get("raise", "Exception")), str(event.get("message", ""))
    exc: BaseException | None = None
    if event.get("kind") == "checkfailed":
        exc = check_failed(message)
    cls = getattr(builtins, name, None)
    if exc is None and event.get("kind") == "builtin" and isinstance(cls, type) \
            and issubclass(cls, Exception) and not issubclass(cls, _RESERVED):
        try:
            exc = cls(message)
        except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
            exc = None
    if exc is None:
        exc = type(name if name.isidentifier() else "StudentError", (Exception,), {})(message)
    exc.where = str(event.get("where", ""))
    return exc


# -- framed messages ------------------------------------------------------------------------------------

class Link:
    """Framed messages over a connected stream socket: a header (JSON) and byte buffers.
    ``quiet_interrupts``: block SIGINT while a frame is written or read, so an interrupt never
    cuts one in half (the kernel's side; it waits for a frame interruptibly)."""

    def __init__(self, sock: socket.socket, *, quiet_interrupts: bool = False) -> None:
        self.sock = sock
        self.quiet = quiet_interrupts and hasattr(signal, "pthread_sigmask")

    def send(self, header: dict[str, Any], buffers: Iterable[bytes] = ()) -> None:
        buffers = list(buffers)
        head = json.dumps(header).encode()
        parts = [_FRAME.pack(len(head), len(buffers)), head]
        for data in buffers:
            parts += [_LENGTH.pack(len(data)), data]
        with self._masked():
            try:
                self.sock.sendall(b"".join(parts))
            except OSError as exc:
                raise Broken(f"the connection was lost ({exc})") from None

    def recv(self) -> tuple[dict[str, Any], list[bytes]]:
        if self.quiet:
            select.select([self.sock], [], [])  # interruptible wait for the frame's first byte
        with self._masked():
            size, count = _FRAME.unpack(self._read(_FRAME.size))
            if size > MESSAGE_LIMIT or count > 1 << 20:
                raise Broken("a message larger than the limit", tampered=True)
            try:
                header = json.loads(self._read(size))
            except ValueError:
                raise Broken("a message that is not JSON", tampered=True) from None
            buffers, total = [], 0
            for _ in range(count):
                (length,) = _LENGTH.unpack(self._read(_LENGTH.size))
                total += length
                if total > MESSAGE_LIMIT:
                    raise Broken("a message larger than the limit", tampered=True)
                buffers.append(self._read(length))
        if not isinstance(header, dict):
            raise Broken("a message that is not the protocol", tampered=True)
        return header, buffers

    def _read(self, n: int) -> bytes:
        out = bytearray(n)
        view, got = memoryview(out), 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], min(n - got, 1 << 24))
            except OSError as exc:
                raise Broken(f"the connection was lost ({exc})") from None
            if k == 0:
                raise Broken("the other side closed the connection")
            got += k
        return bytes(out)

    def _masked(self) -> Any:
        return _sigint_blocked() if self.quiet else contextlib.nullcontext()


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# -- the protocol -------------------------------------------------------------------------------------

class Remote:
    """An object of the other side, by handle: attributes, ``len``, iteration, indexing,
    truth and ``isinstance(x, remote_class)`` are requests; ``repr`` names its type. Dunder
    attributes are never fetched (NumPy would read ``__array_interface__`` as memory)."""

    __slots__ = ("_peer", "_n", "_type", "__weakref__")

    def __init__(self, peer: Peer, n: int, type_name: str) -> None:
        object.__setattr__(self, "_peer", peer)
        object.__setattr__(self, "_n", n)
        object.__setattr__(self, "_type", type_name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._peer.request("getattr", self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot set {name} on a {self._type} of the notebook")

    def __len__(self) -> int:
        n = self._peer.request("len", self)
        if type(n) is not int or n < 0:
            raise TypeError(f"len() of the notebook's {self._type} gave {n!r}")
        return n

    def __iter__(self) -> Any:
        items = self._peer.request("list", self)
        if type(items) is not list:
            raise TypeError(f"iterating the notebook's {self._type} failed")
        return iter(items)

    def __getitem__(self, key: Any) -> Any:
        return self._peer.request("getitem", self, key)

    def __bool__(self) -> bool:
        return self._peer.request("bool", self) is True

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, Remote) and self._peer.request("isinstance", self, obj) is True

    def __repr__(self) -> str:
        return f"<{self._type} object>"


class RemoteFunction(Remote):
    """A callable of the other side: calling it is a ``call`` request."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._peer.call(self, args, kwargs)


class RemoteClass(RemoteFunction):
    """A class of the other side (``kind == "class"``)."""

    __slots__ = ()


def type_name(value: Any) -> str:
    """The type's name of a local or remote value, for messages."""
    return value._type if isinstance(value, Remote) else type(value).__name__


_OPS = ("call", "getattr", "len", "list", "getitem", "bool", "isinstance", "global", "patch", "unpatch")


class Peer:
    """One side of a conversation over ``link``. ``exports``: which objects this side hands out
    by handle (``"any"``: every non-plain object, the kernel; ``"callables"``: functions only,
    the checker, whose other objects never leave it); ``serves``: the requests it answers on
    its exports; ``handlers``: named top-level requests it serves (the checker's ``check``);
    ``check_failed``: the class a check failure becomes here."""

    def __init__(self, link: Link, *, exports: str, serves: Iterable[str], check_failed: type[BaseException],
                 handlers: dict[str, Callable[..., Any]] | None = None) -> None:
        self.link, self.exports, self.serves = link, exports, frozenset(serves)
        self.check_failed, self.handlers = check_failed, dict(handlers or {})
        self.session = 0
        self._reset()

    def _reset(self) -> None:
        self.objects: list[Any] = []          # my exports, by handle
        self.ids: dict[int, int] = {}         # id(obj) -> handle
        self.proxies: dict[int, Remote] = {}  # the other side's exports
        self.patches: list[tuple[dict, str, Any]] = []

    def begin(self, session: int) -> None:
        self.end()
        self.session = session

    def end(self) -> None:
        """Close the session: handles die, patches are undone (last first)."""
        for patch in reversed(self.patches):
            self._undo(patch)
        self._reset()

    @staticmethod
    def _undo(patch: tuple[dict, str, Any]) -> None:
        namespace, name, old = patch
        if old is _MISSING:
            namespace.pop(name, None)
        else:
            namespace[name] = old

    # -- values -----------------------------------------------------------------------------------

    def _ref(self, value: Any) -> Any:
        if isinstance(value, Remote):
            if value._peer is not self:
                raise TypeError("a handle of another conversation")
            return {"$r": value._n}
        if self.exports != "any" and not callable(value):
            raise TypeError(f"cannot send a {type(value).__name__}: not plain data")
        key = id(value)
        if key not in self.ids:
            self.ids[key] = len(self.objects)
            self.objects.append(value)
        kind = "class" if isinstance(value, type) else "function" if callable(value) else "object"
        return {"$e": self.ids[key], "type": type_name(value) if kind != "class" else value.__name__, "kind": kind}

    def encode(self, value: Any) -> tuple[Any, list[bytes]]:
        enc = Encoder(self._ref)
        tree = enc.encode(value)
        return tree, enc.buffers

    def _resolve(self, tree: dict[str, Any]) -> Any:
        if "$r" in tree:
            n = tree["$r"]
            if type(n) is not int or not 0 <= n < len(self.objects):
                raise ValueError("a handle this side never gave out")
            return self.objects[n]
        n, kind = tree["$e"], tree.get("kind")
        if type(n) is not int or kind not in ("class", "function", "object"):
            raise ValueError("malformed handle")
        if n not in self.proxies:
            cls = RemoteClass if kind == "class" else RemoteFunction if kind == "function" else Remote
            self.proxies[n] = cls(self, n, str(tree.get("type", "?"))[:100])
        return self.proxies[n]

    def decode(self, tree: Any, buffers: list[bytes]) -> Any:
        try:
            return decode(tree, buffers, self._resolve)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise Broken(f"a malformed value ({exc})", tampered=True) from None

    # -- requests -----------------------------------------------------------------------------------

    def call(self, fn: Remote, args: tuple, kwargs: dict, *, observe: bool = True) -> Any:
        """``fn(*args, **kwargs)`` on the other side; with ``observe``, what the call changed in
        its arguments is brought back into ``args``/``kwargs`` (without, the other side skips
        the two encodings that finding out costs)."""
        extra = {"headroom": self.headroom} if self.headroom else {}
        if not observe:
            extra["observe"] = False
        return self.request("call", fn, (args, kwargs), restore_into=(args, kwargs) if observe else None,
                            extra=extra or None)

    headroom: int | None = None  # while set, calls run with only this many frames to spare

    def request(self, op: str, target: Remote | None, payload: Any = None, *, restore_into: Any = None,
                session: int | None = None, extra: dict[str, Any] | None = None) -> Any:
        """Send a request and wait for its answer, serving the other side's requests meanwhile."""
        if target is not None and target._peer is not self:
            raise TypeError("a handle of another conversation")
        if target is not None and self.proxies.get(target._n) is not target:
            raise RuntimeError("this object of the notebook belongs to a hidden test that has ended")
        try:
            tree, buffers = self.encode(payload)
        except TooLarge as exc:
            raise ValueError(f"the values are too large to send ({exc})") from None
        header = {"op": op, "s": self.session if session is None else session, "a": tree, **(extra or {})}
        if target is not None:
            header["t"] = target._n
        self.link.send(header, buffers)
        while True:
            msg, bufs = self.link.recv()
            kind = msg.get("op")
            if msg.get("s") != self.session:
                continue  # a message of an earlier, interrupted session
            if kind == "abort":
                raise Broken("the notebook's kernel interrupted the hidden test", kind="abort")
            if kind == "return":
                value = self.decode(msg.get("a"), bufs)
                if "after" in msg and restore_into is not None:
                    try:
                        restore(restore_into, self.decode(msg["after"], bufs))
                    except ValueError as exc:
                        raise Broken(f"a changed argument came back malformed ({exc})", tampered=True) from None
                return value
            if kind == "raise":
                event = msg.get("e") if isinstance(msg.get("e"), dict) else {}
                raise rebuild(event, self.check_failed)
            self.serve(msg, bufs)

    def serve(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        """Answer one request of the other side."""
        op = msg.get("op")
        if op in self.handlers:
            self.handlers[op](msg, buffers)
            return
        if op not in self.serves:
            raise Broken(f"a request this side does not serve ({str(op)[:40]!r})", tampered=True)
        n = msg.get("t")
        if type(n) is not int or not 0 <= n < len(self.objects):
            raise Broken("a request on a handle this side never gave out", tampered=True)
        target = self.objects[n]
        payload = self.decode(msg.get("a"), buffers)
        before = after = None
        try:  # whatever the student's code or its values do, the other side gets an answer
            if op == "call":
                args, kwargs = payload
                if not isinstance(args, tuple) or not isinstance(kwargs, dict):
                    raise Broken("a malformed call", tampered=True)
                observe = msg.get("observe") is not False
                before = self.encode(payload) if observe else None
                headroom = msg.get("headroom")
                if type(headroom) is int and headroom > 0:
                    result = _with_headroom(headroom, target, args, kwargs)
                else:
                    result = target(*args, **kwargs)
                after = self.encode(payload) if observe else None
            else:
                result = self._op(op, target, payload)
            changed = after if after is not None and after != before else None  # trees and bytes compare exactly
        except (Broken, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything
            self.reply_raise(exc)
            return
        self.reply(result, changed)

    def _op(self, op: str, target: Any, payload: Any) -> Any:
        if op == "getattr":
            return getattr(target, str(payload))
        if op == "len":
            return len(target)
        if op == "list":
            return list(target)
        if op == "getitem":
            return target[payload]
        if op == "bool":
            return bool(target)
        if op == "isinstance":
            return isinstance(payload, target)
        if op == "global":  # a global of a function's module, or None
            return target.__globals__.get(str(payload))
        if op == "patch":  # (name, value): set a global of a function's module for this session
            name, value = payload
            namespace = target.__globals__
            self.patches.append((namespace, str(name), namespace.get(name, _MISSING)))
            namespace[str(name)] = value
            return None
        if op == "unpatch":
            if self.patches:
                self._undo(self.patches.pop())
            return None
        raise Broken(f"unknown request {op!r}", tampered=True)

    def reply(self, value: Any, after: tuple[Any, list[bytes]] | None = None) -> None:
        try:
            tree, buffers = self.encode(value)
        except (Broken, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - a notebook's value may fail in any way
            self.reply_raise(ValueError(f"the answer could not be sent ({type(exc).__name__}: {exc})"))
            return
        header: dict[str, Any] = {"op": "return", "s": self.session, "a": tree}
        if after is not None:
            offset = len(buffers)
            header["after"] = _shift(after[0], offset)
            buffers = buffers + after[1]
        self.link.send(header, buffers)

    def reply_raise(self, exc: BaseException) -> None:
        self.link.send({"op": "raise", "s": self.session, "e": exception_event(exc)})


_MISSING = object()


@contextlib.contextmanager
def headroom(frames: int) -> Iterator[None]:
    """Only ``frames`` more nested calls while the block runs (a check that wants no
    recursion: a limit the student raised does not count)."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _with_headroom(frames: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    with headroom(frames):
        return fn(*args, **kwargs)


def _shift(tree: Any, offset: int) -> Any:
    """A tree whose buffer numbers are moved by ``offset`` (two trees in one message)."""
    if isinstance(tree, list):
        return [_shift(t, offset) for t in tree]
    if isinstance(tree, dict):
        out = {k: _shift(v, offset) for k, v in tree.items()}
        for key in ("$a", "$s"):
            if key in tree:
                out[key] = tree[key] + offset
        return out
    return tree


# -- the kernel's side ------------------------------------------------------------------------------

_WRAPPER = '''
def hidden_test(*args, **kwargs):
    __tracebackhide__ = True
    failure = run(args, kwargs)
    if failure is not None:
        raise failure.with_traceback(None) from None
'''


def socket_path(address: str) -> str:
    """The address of the agent's socket as ``bind``/``connect`` take it: ``@name`` is an
    abstract socket, anything else a path."""
    return "\0" + address[1:] if address.startswith("@") else address


def arm(address: str, timeout: float = 30.0) -> None:
    """In the grading kernel: wait for the checker at ``address`` (a Unix socket path, or
    ``@name`` for an abstract one), then install ``grader.checks``: a package whose modules'
    ``check_<name>`` functions ask the checker. Leaves no name in the notebook's namespace."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path(address))
    listener.listen(1)
    listener.settimeout(timeout)
    try:
        sock, _ = listener.accept()
    finally:
        listener.close()
        if not address.startswith("@"):
            os.unlink(address)
    sock.settimeout(None)

    class CheckFailed(AssertionError):
        """A hidden check found a mistake; the message is shown to the student."""

    peer = Peer(Link(sock, quiet_interrupts=True), exports="any", serves=_OPS, check_failed=CheckFailed)
    sessions = iter(range(1, 1 << 62))

    def run_check(module: str, name: str, args: tuple, kwargs: dict) -> BaseException | None:
        session = next(sessions)
        peer.begin(session)
        try:
            verdict = peer.request("check", None, (module, name, args, kwargs), session=session)
        except KeyboardInterrupt:
            try:
                peer.link.send({"op": "abort", "s": session})
            finally:
                peer.end()
            raise
        except Broken as exc:
            return CheckFailed(f"the hidden test could not run ({exc.why}). If your visible tests "
                               "pass, tell your instructor.")
        except Exception as exc:  # noqa: BLE001 - e.g. arguments too large to send
            return CheckFailed(f"the hidden test could not take your answer ({exc}).")
        finally:
            peer.end()
        if isinstance(verdict, dict) and verdict.get("ok") is True:
            return None
        return CheckFailed(str(verdict.get("message", "")) if isinstance(verdict, dict) else "")

    def make_check(module: str, name: str) -> Callable[..., None]:
        namespace = {"run": lambda args, kwargs: run_check(module, name, args, kwargs)}
        exec(compile(_WRAPPER, "<hidden test>", "exec"), namespace)
        fn = namespace["hidden_test"]
        fn.__code__ = fn.__code__.replace(co_name=name, co_qualname=name)
        fn.__name__ = fn.__qualname__ = name
        return fn

    class CheckModule(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if not name.startswith("check_"):
                raise AttributeError(name)
            fn = make_check(self.__name__.rsplit(".", 1)[1], name)
            setattr(self, name, fn)
            return fn

    class Checks(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__") or not name.isidentifier():
                raise AttributeError(name)
            module = CheckModule(f"grader.checks.{name}")
            sys.modules[module.__name__] = module
            setattr(self, name, module)
            return module

    class Finder:
        """``import grader.checks.<name>`` finds the stand-in module."""

        @staticmethod
        def find_spec(fullname: str, path: Any = None, target: Any = None) -> Any:
            import importlib.util

            parts = fullname.split(".")
            if len(parts) != 3 or parts[:2] != ["grader", "checks"]:
                return None
            getattr(checks, parts[2])
            return importlib.util.spec_from_loader(fullname, Loader())

    class Loader:
        @staticmethod
        def create_module(spec: Any) -> Any:
            return sys.modules[spec.name]

        @staticmethod
        def exec_module(module: Any) -> None:
            pass

    grader = types.ModuleType("grader")
    checks = Checks("grader.checks")
    grader.__path__ = []
    checks.__path__ = []
    grader.checks = checks
    checks.CheckFailed = CheckFailed
    sys.modules["grader"], sys.modules["grader.checks"] = grader, checks
    sys.meta_path.insert(0, Finder())
