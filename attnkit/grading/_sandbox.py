"""The sandbox a student's kernel runs in: bubblewrap, resource limits, a process cgroup.

:class:`Sandbox` turns a command (the kernel) into a ``bwrap`` command line:

* ``--unshare-all``: a new network namespace (no network: only a loopback device
  that leads nowhere), a PID namespace (``--die-with-parent``: when the grader kills
  the sandbox, every process in it dies, detached ones included), new IPC, UTS and
  user namespaces;
* a new, empty root with read-only binds of the system (``/usr``, ``/etc`` and the
  ``/bin``, ``/lib`` links), of the Python installation and virtual environment that
  run the kernel, and of the ``attnkit`` package; a private ``/tmp``; the student's
  scratch directory (read-write) and the kernel's socket directory. Nothing else of
  the host's file system exists inside: no submissions, output folder, course
  directory, exercise sources, other students' files or home directories;
* limits set before ``bwrap`` starts, inherited by every process inside:
  ``RLIMIT_AS`` (memory per process), ``RLIMIT_CPU`` (CPU seconds per process) and a
  process limit, enforced by a ``pids`` cgroup where the grader can create one
  (and a ``memory`` cgroup for the sandbox's total memory), else by ``RLIMIT_NPROC``
  (which the kernel does not enforce for root).

:func:`probe` runs ``bwrap`` once and raises :class:`SandboxUnavailable` with the
reason and the way out when it cannot run.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Limits", "Sandbox", "SandboxUnavailable", "cgroup_support", "parse_bytes", "probe"]

GIB = 1024**3


class SandboxUnavailable(RuntimeError):
    """``bwrap`` cannot run here; the message says why and how to proceed."""


def parse_bytes(text: str | int) -> int:
    """``"2G"``, ``"512M"``, ``"1.5GiB"`` or a number of bytes -> bytes.

    Raises:
        ValueError: not a size, or not positive.

    Example:
        >>> parse_bytes("3G")
        3221225472
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().upper().removesuffix("IB").removesuffix("B")
        units = {"K": 1024, "M": 1024**2, "G": GIB, "T": 1024**4}
        mult = units.get(s[-1:], 1)
        if s[-1:] in units:
            s = s[:-1]
        try:
            value = float(s) * mult
        except ValueError:
            raise ValueError(f"memory must be a size such as 2G or 512M; got {text!r}") from None
    if not value > 0:
        raise ValueError(f"memory must be positive; got {text!r}")
    return int(value)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one student's sandbox.

    Attributes:
        memory: bytes of address space per process (``RLIMIT_AS``) and, with a
            memory cgroup, bytes of memory for the whole sandbox.
        cpu_seconds: CPU seconds per process (``RLIMIT_CPU``).
        processes: processes and threads in the sandbox.
    """

    memory: int = 2 * GIB
    cpu_seconds: int = 600
    processes: int = 256

    def __post_init__(self) -> None:
        for name in ("memory", "cpu_seconds", "processes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int; got {v!r}")


class _Cgroup:
    """A v1 or v2 cgroup for one sandbox (``pids`` and, where possible, ``memory``)."""

    def __init__(self, limits: Limits, tag: str) -> None:
        self.dirs: list[Path] = []
        self.kinds: list[str] = []
        base = Path("/sys/fs/cgroup")
        name = f"attnkit-grade-{os.getpid()}-{tag}"
        v2 = (base / "cgroup.controllers").exists()
        if v2:
            own = _own_cgroup_v2()
            if own is None:
                return
            controllers = (own / "cgroup.subtree_control").read_text().split() if (
                own / "cgroup.subtree_control").exists() else []
            if "pids" not in controllers:
                return
            d = own / name
            if self._make(d, {"pids.max": str(limits.processes)}):
                self.kinds.append("pids")
                if "memory" in controllers and _write(d / "memory.max", str(limits.memory)):
                    _write(d / "memory.swap.max", "0")
                    self.kinds.append("memory")
            return
        d = base / "pids" / name
        if self._make(d, {"pids.max": str(limits.processes)}):
            self.kinds.append("pids")
        d = base / "memory" / name
        if self._make(d, {"memory.limit_in_bytes": str(limits.memory)}):
            self.kinds.append("memory")

    def _make(self, d: Path, values: dict[str, str]) -> bool:
        try:
            d.mkdir()
        except OSError:
            return False
        if all(_write(d / k, v) for k, v in values.items()) and os.access(d / "cgroup.procs", os.W_OK):
            self.dirs.append(d)
            return True
        _rmdir(d)
        return False

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def remove(self) -> None:
        for d in self.dirs:
            _rmdir(d)
        self.dirs = []


def sweep_stale_cgroups() -> None:
    """Remove empty cgroups left by grader processes that no longer run (e.g. killed)."""
    base = Path("/sys/fs/cgroup")
    parents = [base / "pids", base / "memory"]
    own = _own_cgroup_v2()
    if own is not None:
        parents.append(own)
    for parent in parents:
        try:
            dirs = list(parent.glob("attnkit-grade-*"))
        except OSError:
            continue
        for d in dirs:
            pid = d.name.split("-")[2]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                _rmdir(d)


def _own_cgroup_v2() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                p = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
                return p if os.access(p, os.W_OK) else None
    except OSError:
        return None
    return None


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def _rmdir(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def _python_dirs() -> list[Path]:
    """Directories the kernel's Python needs: the environment, its base, the interpreter."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
            Path(os.path.realpath(sys.executable)).parent.parent}
    import attnkit

    dirs.add(Path(attnkit.__file__).resolve().parent)
    return sorted(d.resolve() for d in dirs if d.exists())


#: Read-only views of the system; /bin, /lib... are links or binds (see ``Sandbox.command``).
#: The Python that runs the kernel (a virtual environment, its base installation, a
#: conda prefix) is added by ``_python_dirs`` wherever it lives.
SYSTEM = ("/usr", "/etc")


@dataclass
class Sandbox:
    """How one student's processes run: under ``bwrap`` with limits, or plainly.

    Args:
        limits: memory, CPU and process limits.
        enabled: ``False`` for ``--no-sandbox`` (limits by rlimit only, no isolation).
    """

    limits: Limits = field(default_factory=Limits)
    enabled: bool = True

    def binds(self) -> list[Path]:
        """The host paths visible (read-only) inside the sandbox, besides scratch and sockets."""
        out = [Path(p) for p in SYSTEM if Path(p).exists()]
        for d in _python_dirs():
            if not any(_under(d, o) for o in out):
                out.append(d)
        return out

    def refuse_visible(self, secret_paths: Sequence[Path]) -> None:
        """Raise ``SandboxUnavailable`` if a path that must stay hidden would be visible inside."""
        if not self.enabled:
            return
        for s in secret_paths:
            s = Path(os.path.realpath(s))
            for b in self.binds():
                if _under(s, b):
                    raise SandboxUnavailable(
                        f"{s} lies inside {b}, which the sandbox shows to student code "
                        f"(read-only): move it elsewhere"
                    )

    def command(self, argv: Sequence[str], scratch: Path, sockets: Path) -> list[str]:
        """The command line that runs ``argv`` in this sandbox, in ``scratch``."""
        if not self.enabled:
            return list(argv)
        cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        binds = self.binds()
        for b in binds:
            cmd += ["--ro-bind", str(b), str(b)]
        for link in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
            p = Path("/") / link
            if p.is_symlink():
                cmd += ["--symlink", os.readlink(p), str(p)]
            elif p.is_dir() and not any(_under(p, b) for b in binds):
                cmd += ["--ro-bind", str(p), str(p)]
        cmd += ["--bind", str(scratch), str(scratch), "--bind", str(sockets), str(sockets),
                "--chdir", str(scratch), "--"]
        return cmd + list(argv)

    def popen(self, argv: Sequence[str], scratch: Path, sockets: Path, env: dict[str, str],
              tag: str) -> tuple[subprocess.Popen, _Cgroup | None]:
        """Start ``argv`` in the sandbox; return the process and its cgroup (to remove later)."""
        cg = _Cgroup(self.limits, tag) if self.enabled else None
        procs = cg.procs_files() if cg else []
        lim = self.limits
        use_nproc = not (cg and "pids" in cg.kinds)

        def limit() -> None:  # runs in the child, before exec
            for f in procs:
                with open(f, "w") as fh:
                    fh.write(str(os.getpid()))
            resource.setrlimit(resource.RLIMIT_AS, (lim.memory, lim.memory))
            resource.setrlimit(resource.RLIMIT_CPU, (lim.cpu_seconds, lim.cpu_seconds))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if use_nproc and os.getuid() != 0:
                resource.setrlimit(resource.RLIMIT_NPROC, (lim.processes, lim.processes))

        proc = subprocess.Popen(
            self.command(argv, scratch, sockets), cwd=str(scratch), env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=limit, start_new_session=True,
        )
        return proc, cg

    def describe(self, cgroups: Sequence[str] | None = None) -> str:
        """One line for the report: what isolation and which limits are in effect.

        Args:
            cgroups: the cgroup controllers the students' sandboxes got (``Result.cgroups``
                of a run); ``None``: what :func:`cgroup_support` says the grader can create
                here (it reads the cgroup files and creates nothing).
        """
        lim = self.limits
        mem = f"{lim.memory / GIB:g} GiB"
        if not self.enabled:
            return (f"NO SANDBOX (--no-sandbox): student code runs with your rights; "
                    f"memory {mem} per process, CPU {lim.cpu_seconds} s per process")
        kinds = list(cgroup_support() if cgroups is None else cgroups)
        procs = ("a pids cgroup" if "pids" in kinds else
                 "RLIMIT_NPROC" if os.getuid() != 0 else "nothing (root without a writable cgroup)")
        total = " and for the whole sandbox (memory cgroup)" if "memory" in kinds else ""
        return (f"sandbox: bubblewrap, no network, PID namespace; memory {mem} per process{total}, "
                f"CPU {lim.cpu_seconds} s per process, {lim.processes} processes ({procs})")


def cgroup_support() -> list[str]:
    """The cgroup controllers (``pids``, ``memory``) the grader could give a sandbox here.

    Read from the cgroup file system without creating anything: under cgroup v2, the
    controllers enabled for the children of the grader's own cgroup, if it may write
    there; under v1, the ``pids`` and ``memory`` hierarchies it may write to.
    """
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        own = _own_cgroup_v2()
        try:
            enabled = (own / "cgroup.subtree_control").read_text().split() if own else []
        except OSError:
            enabled = []
        return [k for k in ("pids", "memory") if k in enabled and (k == "pids" or "pids" in enabled)]
    return [k for k in ("pids", "memory") if os.access(base / k, os.W_OK)]


def _under(p: Path, base: Path) -> bool:
    try:
        Path(p).resolve().relative_to(Path(base).resolve())
        return True
    except ValueError:
        return False


HOW = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, or `make grading-deps`), "
       "or pass --no-sandbox to grade without isolation (only for submissions you trust)")


def probe() -> None:
    """Check that ``bwrap`` can make the sandbox here.

    Raises:
        SandboxUnavailable: ``bwrap`` is missing or fails (the message has its error
            and what to do).
    """
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(f"the sandbox needs bubblewrap (`bwrap`), which is not on PATH: {HOW}")
    sb = Sandbox()
    scratch = Path(tempfile.mkdtemp(prefix="attnkit-probe-"))
    cmd = sb.command([sys.executable, "-c", "import numpy, attnkit"], scratch, scratch)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bubblewrap could not start: {exc}; {HOW}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()[-1:] or ["(no message)"]
        hint = ""
        if "namespace" in r.stderr or "Operation not permitted" in r.stderr:
            hint = (" (user namespaces are disabled here: enable them, e.g. "
                    "`sysctl kernel.unprivileged_userns_clone=1` or, on Ubuntu 24.04, "
                    "`sysctl kernel.apparmor_restrict_unprivileged_userns=0`; in Docker, run the "
                    "container with --security-opt seccomp=unconfined or --privileged)")
        raise SandboxUnavailable(f"bubblewrap cannot make the sandbox here: {err[0]}{hint}; {HOW}")
