"""nbgrader's Execute preprocessor with a cap on the output kept from the kernel.

A submission that prints 100 MB would otherwise put 100 MB in the autograded notebook,
the feedback and the grader's memory. Output beyond the budget is dropped as it arrives
(one note says so), before nbgrader's own LimitOutput trims what is left."""
from __future__ import annotations

from typing import Any

from nbformat.notebooknode import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

TRUNCATED_NOTE = "[output truncated by the grader: more than {limit} bytes]\n"


def _size(content: dict[str, Any]) -> int:
    """Bytes of text a message carries (streams, rich data, tracebacks)."""
    total = len(content.get("text", "") or "")
    for value in (content.get("data") or {}).values():
        total += len(value) if isinstance(value, str) else len(str(value))
    total += sum(len(line) for line in content.get("traceback", []) or [])
    return total


class LimitedExecute(Execute):
    max_output_bytes = Integer(2 << 20, help="output kept per notebook; the rest is dropped").tag(config=True)

    def output(self, outs: list[NotebookNode], msg: dict, display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        used = getattr(self, "_output_bytes", 0) + _size(msg.get("content", {}))
        self._output_bytes = used
        if used <= self.max_output_bytes or msg.get("msg_type") == "error":
            return super().output(outs, msg, display_id, cell_index)
        if not getattr(self, "_truncated", False):
            self._truncated = True
            note = new_output("stream", name="stdout", text=TRUNCATED_NOTE.format(limit=self.max_output_bytes))
            outs.append(note)
        return None
