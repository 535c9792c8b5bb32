"""Visible self-checks for the notebooks' TODOs (students may read them).

Each module tests properties every correct answer has and names the likely mistake
when one is missing; none holds a reference answer. The grader runs the same checks
outside the student's process (see :mod:`novapick.checks.protocol`).
"""
