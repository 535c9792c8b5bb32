"""The judge: decides hidden checks outside the sandbox.

One :class:`Judge` per submission listens on a Unix socket inside the sandbox's socket
directory. When a graded cell calls ``novapick.checks.protocol.submit(grade_id, ...)``,
the judge runs that grade id's hidden check: it draws inputs here, at grading time,
asks the kernel to call the student's objects on them (:meth:`Session.call`), decides
here, and sends back only pass/fail and a message. Its record (:attr:`Judge.verdicts`)
is what goes into the gradebook; nothing the kernel prints or raises changes it.
"""
from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from novapick.checks.protocol import ProtocolError, recv, send

HELLO_TIMEOUT_S = 10.0


class SubmissionError(Exception):
    """The student's code failed a call (raised, timed out, returned something unusable)."""


@dataclass
class Verdict:
    passed: bool
    message: str
    seed: int          # replays the check's inputs (Judge(..., seed=...))
    calls: int
    wall_s: float


def _unsupported(value: Any) -> str | None:
    """The type name of the first value the kernel could not send, if any."""
    if isinstance(value, dict):
        if "__unsupported__" in value and len(value) == 1:
            return value["__unsupported__"]
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _unsupported(item)
            if found:
                return found
    return None


class Session:
    """One graded cell's connection: call the student's objects, then give a verdict."""

    def __init__(self, sock: socket.socket, targets: list[str], seed: int):
        self.sock, self.targets, self.seed, self.calls = sock, targets, seed, 0
        self._seeds = __import__("random").Random(seed)

    def call(self, target: str, *args: Any, timeout_s: float = 10.0, **kwargs: Any) -> Any:
        """Run ``target(*args, **kwargs)`` in the kernel (its global RNGs seeded by the
        judge) and return the value; raise SubmissionError if the student's code fails."""
        self.calls += 1
        send(self.sock, {"op": "call", "target": target, "args": list(args), "kwargs": kwargs,
                         "seed": self._seeds.randrange(1 << 31), "timeout_s": timeout_s})
        self.sock.settimeout(timeout_s + 5.0)  # the kernel enforces timeout_s; this catches a hung kernel
        try:
            reply = recv(self.sock)
        except socket.timeout:
            raise SubmissionError(f"{target} did not return within {timeout_s:g} s") from None
        except ProtocolError as err:
            raise SubmissionError(f"the kernel broke the grading protocol during {target}: {err}") from None
        if not isinstance(reply, dict) or reply.get("op") not in ("return", "error"):
            raise SubmissionError(f"unexpected reply to a call of {target}")
        if reply["op"] == "error":
            raise SubmissionError(f"{target} raised {reply.get('type')}: {reply.get('message')}")
        kind = _unsupported(reply.get("value"))
        if kind:
            raise SubmissionError(f"{target} returned a {kind}; expected tensors, str or numbers")
        return reply.get("value")

    def verdict(self, passed: bool, message: str) -> None:
        send(self.sock, {"op": "verdict", "passed": passed, "message": message})


Check = Callable[[Session], Any]  # returns an object with .passed and .message (CheckResult)


class Judge:
    """Serves one submission's graded cells; records one verdict per grade id."""

    def __init__(self, socket_path: Path, checks: dict[str, Check], seed: int | None = None):
        self.socket_path, self.checks = Path(socket_path), checks
        self.seed = secrets.randbits(31) if seed is None else seed  # drawn at grading time
        self.verdicts: dict[str, Verdict] = {}
        self.events: list[str] = []
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Judge":
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.socket_path))
        self._server.listen(4)
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="judge", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        if self._server:
            self._server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._session(conn)
                except Exception as err:  # noqa: BLE001 - a broken connection must not stop the judge
                    self.events.append(f"connection dropped: {type(err).__name__}: {err}")

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(HELLO_TIMEOUT_S)
        hello = recv(conn, max_bytes=1 << 16)
        grade_id = hello.get("check") if isinstance(hello, dict) else None
        if grade_id not in self.checks:
            send(conn, {"op": "verdict", "passed": False, "message": f"no hidden check named {grade_id!r}"})
            return
        if grade_id in self.verdicts:  # one verdict per grade id: the first session decides
            send(conn, {"op": "verdict", "passed": self.verdicts[grade_id].passed,
                        "message": "already graded in this run"})
            return
        seed = (self.seed * 1_000_003 + sorted(self.checks).index(grade_id)) % (1 << 31)
        session = Session(conn, list(hello.get("targets", [])), seed)
        start = time.perf_counter()
        try:
            result = self.checks[grade_id](session)
            passed, message = bool(result.passed), str(result.message)
        except SubmissionError as err:
            passed, message = False, str(err)
        except (ProtocolError, OSError) as err:
            passed, message = False, f"the kernel stopped answering: {err}"
        self.verdicts[grade_id] = Verdict(passed, message, seed, session.calls, time.perf_counter() - start)
        try:
            session.verdict(passed, message)
        except OSError:
            pass
