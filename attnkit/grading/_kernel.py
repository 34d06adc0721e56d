"""One student's IPython kernel, in its sandbox, driven cell by cell by the grader.

:class:`KernelSession` starts ``ipykernel`` inside :class:`~attnkit.grading._sandbox.Sandbox`
(sockets over Unix-domain files, since the sandbox has no network), runs cells with
a time limit, and reports what happened to each: ``ok``, ``error`` (the cell raised),
``timeout`` (stopped by an interrupt), ``killed`` (it ignored the interrupt: the
whole sandbox was killed) or ``died`` (the kernel process ended, e.g. ``os._exit``
or a limit). After ``killed`` or ``died`` the session restarts the kernel and runs
again, silently, the cells that had completed, so that grading can go on.

Outputs are kept up to a byte cap per cell (the rest is counted, not stored).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from ._codec import ENCODER, ENCODER_NAMES, MIME, TAGS, AnswerError, encode, loads
from ._guard import GUARD, GUARD_NAMES
from ._sandbox import Sandbox

__all__ = ["CellRun", "KernelDied", "KernelSession"]


@dataclass
class CellRun:
    """What happened when a cell ran.

    ``status``: ``ok``, ``error``, ``timeout``, ``killed``, ``died`` or ``not run``.
    ``outputs``: text pieces (stream text, results' ``text/plain``, error lines), capped.
    """

    status: str
    outputs: list[str] = field(default_factory=list)
    error: str = ""
    cut: int = 0                      # bytes of output left out
    payload: Any = None               # the parsed answer, still encoded (grader requests)


class KernelDied(RuntimeError):
    """The kernel could not be (re)started."""


class KernelSession:
    """A sandboxed IPython kernel for one student.

    Args:
        sandbox: the sandbox (or ``Sandbox(enabled=False)``).
        timeout: seconds a cell may run before it is interrupted.
        max_output: bytes of output kept per cell.
        max_restarts: restarts allowed before the session gives up.
        scratch_root: where the private scratch directory is made.
    """

    def __init__(self, sandbox: Sandbox, timeout: float, *, max_output: int = 10_000,
                 max_restarts: int = 3, scratch_root: str | None = None, tag: str = "0") -> None:
        self.sandbox = sandbox
        self.timeout = float(timeout)
        self.max_output = int(max_output)
        self.max_restarts = int(max_restarts)
        self.tag = tag
        self.dir = Path(tempfile.mkdtemp(prefix="attnkit-student-", dir=scratch_root))
        self.scratch = self.dir / "scratch"
        self.sockets = self.dir / "sockets"
        self.scratch.mkdir()
        self.sockets.mkdir()
        (self.dir / "home").mkdir()
        self.proc: Any = None
        self.cgroup: Any = None
        self.kc: Any = None
        self.restarts = 0
        self.replay: list[str] = []   # cells that completed, to run again after a restart
        self.stderr_tail = b""

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start (or restart) the kernel and wait until it answers."""
        from jupyter_client.blocking import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        self._stop_process()
        for f in self.sockets.iterdir():
            f.unlink(missing_ok=True)
        conn = self.sockets / "kernel.json"
        write_connection_file(str(conn), transport="ipc", ip=str(self.sockets / "k"))
        python = sys.executable
        argv = [python, "-m", "ipykernel_launcher", "-f", str(conn),
                "--IPKernelApp.transport=ipc", "--HistoryManager.enabled=False"]
        self.proc, self.cgroup = self.sandbox.popen(argv, self.scratch, self.sockets,
                                                    self._env(), f"{self.tag}-{self.restarts}")
        kc = BlockingKernelClient()
        kc.load_connection_file(str(conn))
        kc.start_channels()
        self.kc = kc
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise KernelDied(f"the kernel did not start: {self._stderr()}")
            try:
                kc.wait_for_ready(timeout=1)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise KernelDied("the kernel did not start within 60 s") from None

    def _env(self) -> dict[str, str]:
        import attnkit

        pkg_parent = str(Path(attnkit.__file__).resolve().parent.parent)
        # configuration and caches go to a private home, so that the scratch directory
        # (the kernel's working directory) starts empty
        home = "/tmp/home" if self.sandbox.enabled else str(self.dir / "home")
        venv_bin = str(Path(sys.executable).parent)
        return {
            "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": home, "TMPDIR": "/tmp" if self.sandbox.enabled else str(self.dir),
            "PYTHONPATH": pkg_parent, "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0",
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": f"{home}/.matplotlib", "IPYTHONDIR": f"{home}/.ipython",
            "JUPYTER_CONFIG_DIR": f"{home}/.jupyter", "JUPYTER_DATA_DIR": f"{home}/.jupyter-data",
            "JUPYTER_RUNTIME_DIR": str(self.sockets),
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1", "VIRTUAL_ENV": sys.prefix,
        }

    def _stderr(self) -> str:
        try:
            if self.proc is not None and self.proc.stderr is not None:
                os.set_blocking(self.proc.stderr.fileno(), False)
                data = self.proc.stderr.read() or b""
                self.stderr_tail = (self.stderr_tail + data)[-2000:]
        except (OSError, ValueError):
            pass
        lines = self.stderr_tail.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no message)"

    def _stop_process(self) -> None:
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:
                pass
            self.kc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                self.proc.wait(timeout=10)
            except Exception:
                pass
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None
        if self.cgroup is not None:
            _kill_cgroup(self.cgroup)
            self.cgroup.remove()
            self.cgroup = None

    def close(self, keep: bool = False) -> None:
        """Kill every process of the student and delete the scratch directory."""
        self._stop_process()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- running code ----------------------------------------------------------------------
    def run_cell(self, source: str) -> CellRun:
        """Run a student cell (stored in the kernel's history, like Jupyter does)."""
        run = self._execute(source, store_history=True)
        if run.status in ("ok", "error"):
            self.replay.append(source)
        return run

    def recover(self) -> bool:
        """After ``killed``/``died``: restart and run the completed cells again. False: gave up."""
        while self.restarts < self.max_restarts:
            self.restarts += 1
            try:
                self.start()
            except KernelDied:
                continue
            ok = True
            for source in self.replay:
                r = self._execute(source, store_history=True, keep_output=False)
                if r.status in ("killed", "died"):
                    ok = False
                    break
            if ok:
                return True
        return False

    def fetch(self, names: list[str]) -> CellRun:
        """Encode the values of ``names`` in the kernel; ``payload`` maps name -> value."""
        code = (ENCODER + "\n"
                "def _attnkit_fetch():\n"
                "    import json\n"
                "    from IPython import get_ipython\n"
                "    from IPython.display import publish_display_data\n"
                "    ns = get_ipython().user_ns\n"
                "    out = {}\n"
                f"    for n in {names!r}:\n"
                "        if n in ns:\n"
                "            try:\n"
                "                out[n] = _attnkit_encode(ns[n])\n"
                "            except Exception as e:\n"
                f"                out[n] = {{{TAGS['error']!r}: type(e).__name__ + ': ' + str(e)[:300]}}\n"
                f"    publish_display_data({{{MIME!r}: json.dumps(out)}})\n"
                "_attnkit_fetch()\n"
                f"del _attnkit_fetch, {', '.join(ENCODER_NAMES)}\n")
        return self._request(code)

    def call(self, name: str, args: tuple, kwargs: dict,
             forbidden: tuple[str, ...] = ()) -> CellRun:
        """Call the student's function ``name`` in the kernel; ``payload`` is the encoded result.

        With ``forbidden`` (dotted names), the call runs under the guard of
        :mod:`attnkit.grading._guard`, sent with the request: a call of one of those names
        from the student's code makes the result ``raised: ForbiddenCall: ...``.
        """
        blob = json.dumps({"args": encode(list(args)), "kwargs": encode(dict(kwargs)),
                           "forbidden": [str(n) for n in forbidden]})
        names = ", ".join(("_attnkit_call",) + ENCODER_NAMES + GUARD_NAMES)
        code = (ENCODER + "\n" + GUARD + "\n"
                "def _attnkit_call():\n"
                "    import contextlib, json\n"
                "    from IPython import get_ipython\n"
                "    from IPython.display import publish_display_data\n"
                f"    data = json.loads({blob!r})\n"
                "    args = _attnkit_decode(data['args'])\n"
                "    kwargs = _attnkit_decode(data['kwargs'])\n"
                f"    fn = get_ipython().user_ns[{name!r}]\n"
                f"    guard = (_attnkit_guard({name!r}, data['forbidden']) if data['forbidden']\n"
                "             else contextlib.nullcontext())\n"
                "    try:\n"
                "        with guard:\n"
                "            value = fn(*args, **kwargs)\n"
                "        res = {'value': _attnkit_encode(value)}\n"
                "    except KeyboardInterrupt:\n"
                "        raise\n"
                "    except BaseException as e:\n"
                "        res = {'raised': type(e).__name__ + (': ' + str(e)[:300] if str(e) else '')}\n"
                f"    publish_display_data({{{MIME!r}: json.dumps(res)}})\n"
                "try:\n"
                "    _attnkit_call()\n"
                "finally:\n"
                f"    del {names}\n")
        return self._request(code)

    def _request(self, code: str) -> CellRun:
        """Run a call and return its answer; a call whose answer was lost is made once more.

        The answer travels on the kernel's IOPub channel, which drops messages when its
        queue is full: after a student's cell printed tens of megabytes, on a loaded
        machine, a call that ran to the end could arrive without its answer. That is
        the grader's loss, not the student's, so the call is repeated once before it
        counts as "the kernel sent no answer".
        """
        run = self._execute(code, store_history=False, want_payload=True)
        if run.status == "ok" and run.payload is None:
            run = self._execute(code, store_history=False, want_payload=True)
        if run.status == "ok" and run.payload is None:
            run.status, run.error = "error", "the kernel sent no answer"
        return run

    def _execute(self, code: str, *, store_history: bool, keep_output: bool = True,
                 want_payload: bool = False) -> CellRun:
        run = CellRun("ok")
        if not self.alive():
            return CellRun("died", error="the kernel is not running")
        kc = self.kc
        msg_id = kc.execute(code, silent=False, store_history=store_history,
                            allow_stdin=False, stop_on_error=False)
        deadline = time.monotonic() + self.timeout
        interrupted_at: float | None = None
        kept = 0
        payload_text: str | None = None
        idle = False
        while not idle:
            now = time.monotonic()
            if interrupted_at is None and now > deadline:
                interrupted_at = now
                self._interrupt()
            if interrupted_at is not None and now > interrupted_at + 3:
                self._stop_process()
                run.status = "killed"
                run.error = "it ignored the interrupt after the time limit; the kernel was killed"
                return run
            if not self.alive():
                run.status = "died"
                code_ = self.proc.returncode if self.proc is not None else None
                run.error = f"the kernel died (exit status {code_})" if code_ is not None else \
                    "the kernel died"
                if code_ is not None and code_ < 0:
                    run.error = f"the kernel was killed by signal {-code_}"
                self._stop_process()
                return run
            try:
                msg = kc.get_iopub_msg(timeout=0.1)
            except Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "stream":
                text = str(content.get("text", ""))
                kept = self._keep(run, text, kept, keep_output)
            elif kind in ("execute_result", "display_data"):
                data = content.get("data", {})
                if want_payload and MIME in data and payload_text is None:
                    payload_text = str(data[MIME])
                elif "text/plain" in data:
                    kept = self._keep(run, str(data["text/plain"]) + "\n", kept, keep_output)
            elif kind == "error":
                line = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}".rstrip(": ")
                run.error = line[:2000]
                kept = self._keep(run, line + "\n", kept, keep_output)
        if interrupted_at is not None:
            run.status = "timeout"
            run.error = f"stopped: the cell ran longer than the time limit ({self.timeout:g} s)"
        elif run.error:
            run.status = "error"
        if payload_text is not None and run.status == "ok":
            try:
                run.payload = loads(payload_text)
            except AnswerError as exc:
                run.status, run.error = "error", str(exc)
        return run

    def _keep(self, run: CellRun, text: str, kept: int, keep_output: bool) -> int:
        if not keep_output:
            return kept
        data = text.encode("utf-8", errors="replace")
        room = self.max_output - kept
        if room <= 0:
            run.cut += len(data)
            return kept
        if len(data) > room:
            run.outputs.append(data[:room].decode("utf-8", errors="ignore"))
            run.cut += len(data) - room
            return self.max_output
        run.outputs.append(text)
        return kept + len(data)

    def _interrupt(self) -> None:
        try:
            msg = self.kc.session.msg("interrupt_request", content={})
            self.kc.control_channel.send(msg)
        except Exception:
            pass


def _kill_cgroup(cg: Any) -> None:
    for d in getattr(cg, "dirs", []):
        try:
            pids = (d / "cgroup.procs").read_text().split()
        except OSError:
            continue
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass
        for _ in range(50):
            try:
                if not (d / "cgroup.procs").read_text().split():
                    break
            except OSError:
                break
            time.sleep(0.02)

