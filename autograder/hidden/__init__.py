"""Hidden checks, per assignment: grade id -> check run by the judge (never shipped)."""
from __future__ import annotations

from autograder.hidden import augmentation

ASSIGNMENTS = {"01_augmentation": augmentation.CHECKS}
