"""The instructor side of the NovaPick course (never shipped to students).

``python -m autograder build`` writes the instructor and student notebooks from
``sources/``; ``selftest`` and ``grade`` run nbgrader's autograde with each submission's
kernel in a bubblewrap sandbox and score it by the judge's verdicts (``judge.py``,
``hidden/``), decided outside the sandbox.
"""
