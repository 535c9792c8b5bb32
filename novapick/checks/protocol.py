"""The kernel's side of grading: hand the judge your functions, get a verdict back.

At grading time the notebook's kernel runs in a sandbox that cannot see the hidden
checks, the reference answers or the expected values. A graded cell calls
:func:`submit` with the objects it grades. The judge, a process outside the sandbox,
connects through one Unix socket (``$NOVAPICK_JUDGE_SOCKET``) and drives the kernel:

    kernel -> judge  {"op": "hello", "check": grade_id, "targets": [names]}
    judge  -> kernel {"op": "call", "target": "model.load_state_dict", "args": [...],
                      "kwargs": {...}, "seed": int, "timeout_s": float}
    kernel -> judge  {"op": "return", "value": ..., "wall_s": float}
                     or {"op": "error", "type": "ValueError", "message": "..."}
    ...                                   (as many calls as the check needs)
    judge  -> kernel {"op": "verdict", "passed": bool, "message": str}

``target`` is a dotted path into the objects given to :func:`submit` (a function, a
module's method, ``model.state_dict``). Payloads are ``torch.save`` bytes read back with
``torch.load(weights_only=True)``: tensors, state dicts, lists, tuples, dicts, str,
numbers, None; nothing else crosses (no pickled code either way). Each call carries its
own time limit, enforced here (SIGALRM) and by the judge. The verdict's message is all
the kernel ever learns; the score is the judge's record, whatever this cell prints.

Outside grading (Colab, your laptop) there is no socket and :func:`submit` only says so.
"""
from __future__ import annotations

import io
import os
import random
import signal
import socket
import struct
import time
from contextlib import contextmanager
from typing import Any

import torch

SOCKET_ENV = "NOVAPICK_JUDGE_SOCKET"
MAX_MESSAGE_BYTES = 256 << 20  # a state dict of the course's largest model fits easily
_HEADER = struct.Struct("!Q")


class ProtocolError(RuntimeError):
    """A malformed, oversized or unexpected message."""


class CallTimeout(Exception):
    """A call ran past its time limit."""


def encode(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def decode(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=True)  # no arbitrary unpickling


def send(sock: socket.socket, obj: Any) -> None:
    data = encode(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ProtocolError(f"connection closed with {left} of {n} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(sock: socket.socket, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    (size,) = _HEADER.unpack(_read_exact(sock, _HEADER.size))
    if size > max_bytes:
        raise ProtocolError(f"message of {size} bytes, limit {max_bytes}")
    return decode(_read_exact(sock, size))


def portable(value: Any) -> Any:
    """What crosses to the judge: plain tensors (detached copies on the CPU), containers
    of them, str/numbers/None; anything else becomes a marker naming its type, so the
    judge can say "expected a Tensor, got ndarray" instead of failing to decode."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone().as_subclass(torch.Tensor)
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        items = [portable(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: portable(v) for k, v in value.items()}
    return {"__unsupported__": f"{type(value).__module__}.{type(value).__qualname__}"}


@contextmanager
def _time_limit(seconds: float):
    """Raise CallTimeout in the main thread after ``seconds`` (no-op elsewhere)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise CallTimeout(f"call exceeded its {seconds:g} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _resolve(targets: dict[str, Any], path: str) -> Any:
    head, *rest = path.split(".")
    if head not in targets:
        raise ProtocolError(f"unknown target {path!r}; this cell submitted {sorted(targets)}")
    obj = targets[head]
    for name in rest:
        obj = getattr(obj, name)
    return obj


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (1 << 32))
    except ImportError:
        pass


def _run_call(targets: dict[str, Any], message: dict) -> dict:
    start = time.perf_counter()
    try:
        fn = _resolve(targets, message["target"])
        if "seed" in message:
            _seed(int(message["seed"]))
        with _time_limit(float(message.get("timeout_s", 0))):
            value = fn(*message.get("args", ()), **message.get("kwargs", {}))
        return {"op": "return", "value": portable(value), "wall_s": time.perf_counter() - start}
    except (Exception, SystemExit) as err:  # noqa: BLE001 - the student's error goes to the judge
        return {"op": "error", "type": type(err).__name__, "message": str(err)[:2000],
                "wall_s": time.perf_counter() - start}


def submit(check: str, **targets: Any) -> bool | None:
    """Let the judge run hidden check ``check`` on ``targets`` (name -> object).

    Returns the verdict (True/False) at grading time and None elsewhere. Raises
    AssertionError on a failed verdict so the cell shows it (the score does not depend
    on that: the judge records it)."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        print(f"[{check}] hidden check: runs when your notebook is graded (same properties as the "
              f"self-check above, more calls, inputs drawn at grading time).")
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        send(sock, {"op": "hello", "check": check, "targets": sorted(targets)})
        while True:
            message = recv(sock)
            if message.get("op") == "call":
                send(sock, _run_call(targets, message))
            elif message.get("op") == "verdict":
                print(f"[{check}] {'passed' if message['passed'] else 'failed'}: {message['message']}")
                if not message["passed"]:
                    raise AssertionError(message["message"])
                return True
            else:
                raise ProtocolError(f"unexpected message from the judge: {message.get('op')!r}")
