"""Notebook 01's hidden checks: the visible checks' properties, decided by the judge.

The property tests live in :mod:`novapick.checks.augmentation` (students may read
them: they hold no answer). Here they run on inputs drawn at grading time, with two to
three times as many calls, and every call goes through the sandboxed kernel: the
student's process computes outputs and never sees what they are compared with.
"""
from __future__ import annotations

from typing import Callable

import torch

from autograder.judge import Session
from novapick.checks import augmentation as props

CALL_TIMEOUT_S = 10.0  # one augment_observation call (the reference takes ~10 ms)
CALLS = {"augment_contract": 40, "augment_paired_geometry": 80, "augment_crop": 80,
         "augment_flip_language": 120, "augment_depth_noise": 60, "augment_colour_jitter": 80}


def _hidden(grade_id: str) -> Callable[[Session], props.CheckResult]:
    check = props.CHECKS[grade_id]

    def run(session: Session) -> props.CheckResult:
        gen = torch.Generator().manual_seed(session.seed)

        def call(rgb: torch.Tensor, depth: torch.Tensor, language: str):
            return session.call("augment_observation", rgb, depth, language, timeout_s=CALL_TIMEOUT_S)

        return check(call, gen, CALLS[grade_id])

    run.__doc__ = check.__doc__
    return run


CHECKS = {grade_id: _hidden(grade_id) for grade_id in props.CHECKS}
