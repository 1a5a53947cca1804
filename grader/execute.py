"""nbgrader's Execute preprocessor, run in a sandbox, with per-notebook outcomes.

:class:`SandboxExecute` replaces nbgrader's ``Execute`` in the autograde pass. For each notebook
it starts one kernel in a :class:`grader.sandbox.KernelBox` and

- limits each cell to ``limits.cell_seconds`` and the notebook to ``limits.notebook_seconds``:
  a cell that times out is interrupted; a kernel that ignores the interrupt, or a notebook out
  of time, is killed and its remaining cells are marked as not run;
- turns a kernel that dies (``os._exit``, a crash, a CPU or memory limit) into an error output
  on the cell that was running and "not run" on the rest, instead of an aborted notebook;
- keeps at most ``limits.output_mb`` of output per notebook (10^6 printed lines cost the grader
  nothing);
- takes the hidden checks' records (comm messages, see :mod:`grader.checks`) per cell, and
  ignores every other comm (no widget can capture a cell's outputs);
- renames stderr to stdout in graded test cells: nbgrader scores a test cell that wrote to
  stderr 0, but a warning or a debug print is no failure. Failures are exceptions (``error``
  outputs), which stay.

What happened is left in ``runs[notebook]`` (:class:`NotebookRun`) for
:func:`grader.grading.grade_submission`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

from grader.checks import RECORD_TARGET
from grader.replay import Record
from grader.sandbox import KernelBox, Limits, SandboxKernelManager, exit_reason

__all__ = ["SandboxExecute", "NotebookRun", "CellRun", "Context"]

#: Bytes of hidden-check records kept per notebook (the largest real ones are ~100 MB).
RECORDS_LIMIT = 1 << 30
#: Run silently in every grading kernel before the notebook (leaves no name behind).
ARM = '__import__("grader.checks", fromlist=["_arm"])._arm()'


@dataclass
class Context:
    """What every notebook of one submission shares."""

    scratch: Path
    course_root: Path
    assignment: str
    mode: str
    limits: Limits
    files: dict[str, bytes]
    env: dict[str, str]


@dataclass
class CellRun:
    """A graded code cell after execution."""

    index: int
    source: str
    errored: bool
    timed_out: bool
    records: list[Record] = field(default_factory=list)


@dataclass
class NotebookRun:
    """How a notebook's execution went."""

    outcome: str = "graded"              # graded | kernel died | time limit
    message: str = ""
    cells: dict[str, CellRun] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    armed_error: str = ""                # why the hidden checks could not record, if they could not


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _graded_test(cell: NotebookNode) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


class SandboxExecute(Execute):
    """See the module docstring; use :meth:`bound` (nbgrader instantiates the class)."""

    context: Context
    runs: dict[str, NotebookRun]

    @classmethod
    def bound(cls, context: Context, runs: dict[str, NotebookRun]) -> type[SandboxExecute]:
        """A subclass carrying one submission's context and the dict its runs go to (class
        attributes: traitlets would deep-copy config values)."""
        return type(cls.__name__, (cls,), {"context": context, "runs": runs})

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> tuple[NotebookNode, Any]:
        ctx: Context = self.context
        name = resources["nbgrader"]["notebook"]
        self._run = run = NotebookRun()
        self.runs[name] = run
        self._box = KernelBox(ctx.scratch, name, ctx.mode, ctx.limits, course_root=ctx.course_root,
                              assignment=ctx.assignment, files=ctx.files, env=ctx.env)
        self._start = time.monotonic()
        self._deadline = self._start + ctx.limits.notebook_seconds
        self._stopped: str | None = None
        self._output_bytes = self._record_bytes = 0
        self._output_cut = False
        self._cell_records: list[Record] | None = None
        self._armed = False
        self.timeout = ctx.limits.cell_seconds
        self.interrupt_on_timeout = True
        self.raise_on_iopub_timeout = True
        try:
            nb, resources = super().preprocess(nb, resources, km)
        except Exception as exc:  # the kernel did not start, or died between cells
            self.log.error("notebook %s stopped", name, exc_info=True)
            code = self._exit_code()
            if code is None:  # the kernel is fine: the grader failed
                self._stop("error", f"grading failed ({type(exc).__name__}: {exc})")
            else:
                self._stop("kernel died", exit_reason(code, ctx.limits))
            for cell in nb.cells:
                if cell.cell_type == "code" and cell.source.strip() and not cell.get("outputs"):
                    cell.outputs = [_error("GraderNotRun", f"not run: {run.message}")]
        finally:
            self._box.close()
            run.seconds = time.monotonic() - self._start
        self._summarize(nb)
        return nb, resources

    async def _arm(self) -> None:
        """Start the hidden checks' recording in the kernel, before any notebook code."""
        self._armed = True
        msg_id = await ensure_async(self.kc.execute(ARM, silent=True, store_history=False))
        reply = await self.async_wait_for_reply(msg_id)
        content = (reply or {}).get("content", {})
        if content.get("status") != "ok":
            why = f"{content.get('ename', 'no reply')}: {content.get('evalue', '')}"
            self._run.armed_error = f"the grading kernel could not load grader.checks ({why})"

    # -- kernels, deadlines, deaths -----------------------------------------------------------------

    def create_kernel_manager(self) -> SandboxKernelManager:
        self.km = SandboxKernelManager(config=self.config, box=self._box)
        return self.km

    def _get_timeout(self, cell: NotebookNode | None) -> int | None:
        left = self._deadline - time.monotonic()
        return max(1, int(min(self.context.limits.cell_seconds, left) + 0.999))

    def _exit_code(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None:
            return None
        for _ in range(50):  # a dying sandbox takes a moment to report
            if process.poll() is not None:
                return process.returncode
            time.sleep(0.02)
        return None

    def _stop(self, outcome: str, message: str) -> None:
        if self._stopped is None:
            self._stopped = message
            self._run.outcome, self._run.message = outcome, message

    async def _check_raise_for_error(self, cell: NotebookNode, cell_index: int,
                                     exec_reply: dict[str, Any] | None) -> None:
        payload = (exec_reply or {}).get("content", {}).get("payload") or []
        self._exit_asked = any(p.get("source") == "ask_exit" and not p.get("keepkernel") for p in payload)
        await super()._check_raise_for_error(cell, cell_index, exec_reply)

    async def _kill(self) -> None:
        if self.km is not None and await self.km.is_alive():
            await self.km.shutdown_kernel(now=True)

    async def async_execute_cell(self, cell: NotebookNode, cell_index: int, execution_count: int | None = None,
                                 store_history: bool = True) -> NotebookNode:
        if cell.cell_type != "code" or not cell.source.strip():
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        limits = self.context.limits
        if self._stopped is None and time.monotonic() >= self._deadline:
            self._stop("time limit", f"the notebook's time limit ({limits.notebook_seconds:g} s) was reached")
            await self._kill()
        records: list[Record] = []
        if self._stopped is None and not self._armed:
            await self._arm()
        if self._stopped is not None:
            cell.outputs = [_error("GraderNotRun", f"not run: {self._stopped}")]
        else:
            cell = await self._execute(cell, cell_index, execution_count, store_history, records)
        if _graded_test(cell):
            for out in cell.outputs:
                if out.output_type == "stream" and out.name == "stderr":
                    out.name = "stdout"
            errors = [o for o in cell.outputs if o.output_type == "error"]
            self._run.cells[cell.metadata["nbgrader"]["grade_id"]] = CellRun(
                index=cell_index, source=cell.source, errored=bool(errors),
                timed_out=any(o.get("ename") == "CellTimeoutError" for o in errors), records=records)
        return cell

    execute_cell = run_sync(async_execute_cell)  # the base class bound its own coroutine

    async def _execute(self, cell: NotebookNode, cell_index: int, execution_count: int | None,
                       store_history: bool, records: list[Record]) -> NotebookNode:
        limits = self.context.limits
        self._cell_records = records
        self._exit_asked = False
        try:
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            if self._exit_asked:  # exit()/quit(): the kernel stops 0.1 s later; the next cell must not win that race
                self._stop("kernel died", exit_reason(self._exit_code(), limits))
                await self._kill()
        except DeadKernelError:
            self._stop("kernel died", exit_reason(self._exit_code(), limits))
            cell.outputs.append(_error("KernelDied", f"{self._stopped}, while this cell ran"))
        except CellTimeoutError:  # interrupted, but it never went idle: it ignores interrupts
            await self._kill()
            self._stop("time limit", f"a cell ran past its time limit ({limits.cell_seconds:g} s) and the "
                                     "kernel did not stop when interrupted")
            cell.outputs.append(_error("CellTimeoutError", self._stopped))
        finally:
            self._cell_records = None
        if self._stopped is None and time.monotonic() >= self._deadline:
            self._stop("time limit", f"the notebook's time limit ({limits.notebook_seconds:g} s) was reached")
            await self._kill()
        elif self._stopped is None and any(o.output_type == "error" and o.get("ename") == "CellTimeoutError"
                                           for o in cell.outputs):
            self._run.notes.append(f"cell {cell_index + 1} ran past its time limit ({limits.cell_seconds:g} s) "
                                   "and was interrupted")
        return cell

    # -- messages ---------------------------------------------------------------------------------------

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        size = len(json.dumps(msg["content"], default=str)) if msg["msg_type"] != "stream" \
            else len(msg["content"].get("text", ""))
        self._output_bytes += size
        if self._output_bytes > self.context.limits.output_mb * 2**20:
            if not self._output_cut:
                self._output_cut = True
                self._run.notes.append(f"output beyond {self.context.limits.output_mb:g} MB was dropped")
                outs.append(NotebookNode(output_type="stream", name="stdout",
                                         text="\n[grader: further output of this notebook was dropped]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def handle_comm_msg(self, outs: list[NotebookNode], msg: dict[str, Any], cell_index: int) -> None:
        """Keep hidden-check records; ignore every other comm (widgets included)."""
        content = msg["content"]
        if msg["msg_type"] != "comm_open" or content.get("target_name") != RECORD_TARGET:
            return
        records = self._cell_records
        try:
            text = content["data"]["record"]
            buffers = [bytes(b) for b in msg.get("buffers") or []]
            size = len(text) + sum(map(len, buffers))
            self._record_bytes += size
            if records is None or self._record_bytes > RECORDS_LIMIT:
                return
            header = json.loads(text)
            if isinstance(header, dict):
                records.append(Record(header, buffers))
        except (KeyError, TypeError, ValueError):
            return

    def _summarize(self, nb: NotebookNode) -> None:
        """Notes about the notebook as a whole (memory errors) for the result's message."""
        if any(o.get("ename") == "MemoryError" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.output_type == "error"):
            self._run.notes.append(f"a cell ran out of memory (limit {self.context.limits.memory_mb} MB)")
