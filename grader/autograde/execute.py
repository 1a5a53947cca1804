"""nbgrader's Execute preprocessor, run in a sandbox, with per-notebook outcomes.

:class:`SandboxExecute` replaces nbgrader's ``Execute`` in the autograde pass. For each notebook
it starts one kernel in a :class:`grader.sandbox.box.KernelBox` and

- limits each cell to ``limits.cell_seconds`` and the notebook to ``limits.notebook_seconds``:
  a cell that times out is interrupted; a kernel that ignores the interrupt, or a notebook out
  of time, is killed and its remaining cells are marked as not run;
- turns a kernel that dies (``os._exit``, a crash, a CPU or memory limit) into an error output
  on the cell that was running and "not run" on the rest, instead of an aborted notebook;
- keeps at most ``limits.output_mb`` of output per notebook (10^6 printed lines cost the grader
  nothing);
- runs the hidden checks in a checker process next to the kernel (:mod:`grader.kernel.checker`): the
  kernel gets the agent (:mod:`grader.kernel.agent`) as one silent cell before the notebook, and each
  graded test cell may run the checks its hidden region names, once; the checker's verdicts
  are kept per cell. Comms are ignored (no widget can capture a cell's outputs);
- renames stderr to stdout in graded test cells: nbgrader scores a test cell that wrote to
  stderr 0, but a warning or a debug print is no failure. Failures are exceptions (``error``
  outputs), which stay.

What happened is left in ``runs[notebook]`` (:class:`NotebookRun`) for
:func:`grader.autograde.pipeline.grade_submission`.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

from grader.kernel.checker import Checker
from grader.autograde.score import expected_checks
from grader.nb import split_hidden
from grader.sandbox.box import BOX, KernelBox, SandboxKernelManager
from grader.sandbox.limits import Limits, exit_reason

__all__ = ["SandboxExecute", "NotebookRun", "CellRun", "Context"]

#: Run silently in every grading kernel before the notebook: the agent's source, then
#: ``arm(address)``; it leaves no name in the notebook's namespace.
ARM = '(lambda ns: (exec(compile({source!r}, "<grader agent>", "exec"), ns), ns["arm"]({address!r})))' \
      '({{"__name__": "grader.kernel.agent"}})'


@dataclass
class Context:
    """What every notebook of one submission shares."""

    scratch: Path
    course_root: Path                    # its grader/ and course/: the checker's
    library: Path                        # the folder holding the kernel's course/ (the student edition)
    assignment: str
    mode: str
    limits: Limits
    files: dict[str, bytes]
    env: dict[str, str]
    checker_env: dict[str, str]
    check_modules: list[str]             # the assignment's check modules, loaded while the kernel starts


@dataclass
class CellRun:
    """A graded code cell after execution."""

    index: int
    source: str
    errored: bool
    timed_out: bool
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    diagnosed: list[dict[str, Any]] = field(default_factory=list)  # see SandboxExecute._diagnose


@dataclass
class NotebookRun:
    """How a notebook's execution went."""

    outcome: str = "graded"              # graded | kernel died | time limit
    message: str = ""
    cells: dict[str, CellRun] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    armed_error: str = ""                # why the hidden checks could not run, if they could not
    stray: list[str] = field(default_factory=list)  # protocol violations outside any check: tampering


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
        self._checker = Checker(ctx.checker_env, ctx.scratch, ctx.check_modules)
        self._box = KernelBox(ctx.scratch, name, ctx.mode, ctx.limits, library=ctx.library,
                              assignment=ctx.assignment, files=ctx.files, env=ctx.env)
        self._start = time.monotonic()
        self._deadline = self._start + ctx.limits.notebook_seconds
        self._stopped: str | None = None
        self._output_bytes = 0
        self._output_cut = False
        self._armed = False
        self._launcher: Any = None  # the kernel's launcher once _async_cleanup_kernel stopped it
        self._launcher_stopped = False
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
            self._ask("close")  # refused requests after the last test cell
            self._checker.close()
            if self._launcher is None:  # else the box closes once the stopped kernel has exited
                self._box.close()
            run.seconds = time.monotonic() - self._start
        self._summarize(nb)
        return nb, resources

    async def _arm(self) -> None:
        """Give the kernel the agent and connect the checker to it, before any notebook code."""
        self._armed = True
        token = secrets.token_hex(12)
        if self._box.mode == "namespaces":  # a socket in the kernel's own /box, seen through /proc
            inside, outside = f"{BOX}/c", f"/proc/{self._box.sandbox_pid}/root{BOX}/c"
        else:  # an abstract socket with an unguessable name
            inside = outside = f"@grader-{token}"
        source = (self.context.course_root / "grader" / "kernel" / "agent.py").read_text(encoding="utf-8")
        msg_id = await ensure_async(self.kc.execute(ARM.format(source=source, address=inside),
                                                    silent=True, store_history=False))
        connected = self._ask("connect", address=outside)
        reply = await self.async_wait_for_reply(msg_id)
        content = (reply or {}).get("content", {})
        if content.get("status") != "ok" or not connected.get("ok"):
            why = connected.get("error") or f"{content.get('ename', 'no reply')}: {content.get('evalue', '')}"
            self._run.armed_error = f"the grading kernel could not reach the hidden checks ({why})"

    def _ask(self, op: str, **fields: Any) -> dict[str, Any]:
        """A command to the checker; what it refused meanwhile goes to the notebook's record."""
        reply = self._checker.command(op, **fields)
        self._run.stray += reply.get("stray") or []
        return reply

    # -- kernels, deadlines, deaths -----------------------------------------------------------------

    def create_kernel_manager(self) -> SandboxKernelManager:
        self.km = SandboxKernelManager(config=self.config, box=self._box)
        return self.km

    def _get_timeout(self, cell: NotebookNode | None) -> int | None:
        left = self._deadline - time.monotonic()
        return max(1, int(min(self.context.limits.cell_seconds, left) + 0.999))

    async def _async_cleanup_kernel(self) -> None:
        """Stop the kernel without waiting for it (every result is read by now): SIGTERM to its
        launcher, which kills everything in the sandbox, and the box is closed in the background
        once the launcher has exited (:meth:`KernelBox.close_later`). nbclient's graceful
        shutdown would hold the next notebook up for a second."""
        if self.km is None:  # already cleaned up (a signal, then the end of the notebook)
            return
        process = getattr(self.km.provisioner, "process", None)
        if process is None:
            return await super()._async_cleanup_kernel()
        self._launcher = process
        if process.poll() is None:
            process.terminate()
        self._launcher_stopped = process.returncode is None  # a live kernel we stopped did not die
        try:
            if self.kc is not None:
                await ensure_async(self.kc.stop_channels())
            await ensure_async(self.km.cleanup_resources())
        finally:
            self.kc = self.km = None
            self._box.close_later(process)

    def _exit_code(self) -> int | None:
        process = self._launcher or getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None or (process is self._launcher and self._launcher_stopped):
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

    async def _diagnose(self, cell: NotebookNode, expect: list[str]) -> list[dict[str, Any]]:
        """A test cell failed before its hidden checks ran: run them on their own, so the
        student reads what they find (a named mistake) under the cell. The cell's score stays
        nbgrader's 0; the verdicts only inform (feedback, ``report --mistakes``)."""
        self._ask("open", expect=expect)
        try:
            msg_id = await ensure_async(self.kc.execute("\n".join(split_hidden(cell.source)[1]), silent=True,
                                                        store_history=False))
            await self.async_wait_for_reply(msg_id, cell)  # past the cell's limit: interrupted
        except Exception:  # noqa: BLE001 - a kernel that died here is noticed by the next cell
            self.log.info("diagnosis of %s stopped", cell.metadata.get("nbgrader", {}).get("grade_id"), exc_info=True)
        verdicts = self._ask("close").get("verdicts") or []
        said = [v["message"] for v in verdicts if not v.get("ok") and v.get("message")
                and "not implemented" not in v["message"]]
        if said:
            cell.outputs.append(NotebookNode(output_type="stream", name="stdout", text=(
                "The visible tests above failed, so the hidden test ran on its own to say more (this "
                "cell's score stays 0):\n" + "\n".join(said) + "\n")))
        return verdicts

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
        verdicts: list[dict[str, Any]] = []
        diagnosed: list[dict[str, Any]] = []
        if self._stopped is None and not self._armed:
            await self._arm()
        expect = expected_checks(cell.source) if _graded_test(cell) and not self._run.armed_error else []
        if self._stopped is not None:
            cell.outputs = [_error("GraderNotRun", f"not run: {self._stopped}")]
        elif expect:
            opened = self._ask("open", expect=expect)
            cell = await self._execute(cell, cell_index, execution_count, store_history)
            verdicts = self._ask("close").get("verdicts") or []
            if not opened.get("ok"):
                self._run.armed_error = f"the hidden checks stopped ({opened.get('error', '')})"
            elif not verdicts and self._stopped is None and any(o.output_type == "error" for o in cell.outputs):
                diagnosed = await self._diagnose(cell, expect)
        else:
            cell = await self._execute(cell, cell_index, execution_count, store_history)
        if _graded_test(cell):
            for out in cell.outputs:
                if out.output_type == "stream" and out.name == "stderr":
                    out.name = "stdout"
            errors = [o for o in cell.outputs if o.output_type == "error"]
            self._run.cells[cell.metadata["nbgrader"]["grade_id"]] = CellRun(
                index=cell_index, source=cell.source, errored=bool(errors),
                timed_out=any(o.get("ename") == "CellTimeoutError" for o in errors), verdicts=verdicts,
                diagnosed=diagnosed)
        return cell

    execute_cell = run_sync(async_execute_cell)  # the base class bound its own coroutine

    async def _execute(self, cell: NotebookNode, cell_index: int, execution_count: int | None,
                       store_history: bool) -> NotebookNode:
        limits = self.context.limits
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
        """Ignore every comm (widgets included): the hidden checks have their own channel."""

    def _summarize(self, nb: NotebookNode) -> None:
        """Notes about the notebook as a whole (memory errors) for the result's message."""
        if any(o.get("ename") == "MemoryError" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.output_type == "error"):
            self._run.notes.append(f"a cell ran out of memory (limit {self.context.limits.memory_mb} MB)")
