"""Instructions generated from object attributes, with left/right when needed.

"Left" and "right" are the robot's: the robot faces +x, so left is +y. At the home pose
the wrist camera's image-right is the robot's right, so flipping an image horizontally
must swap the two words (the augmentation notebook relies on this).
"""
from __future__ import annotations

import numpy as np

from novapick.sim.catalog import ObjectSpec

TEMPLATES = ("pick up the {}", "grab the {}", "pick the {}", "get the {}", "please pick up the {}")
MAX_TOKENS = 64  # Section 2: at most 64 tokens


def describe(spec: ObjectSpec, include_size: bool = True) -> str:
    return spec.describe() if include_size else spec.describe().split(" ", 1)[1]


def make_instruction(target: ObjectSpec, target_y: float,
                     others: list[tuple[ObjectSpec, float]], rng: np.random.Generator) -> str:
    """Instruction naming the target; adds 'on the left/right' when another item in the
    bin has the same category (so the noun alone would be ambiguous)."""
    phrase = describe(target, include_size=bool(rng.random() < 0.7))
    same = [y for spec, y in others if spec.category == target.category]
    if same:
        side = "left" if target_y > np.mean(same) else "right"
        phrase = f"{phrase} on the {side}"
    text = str(rng.choice(TEMPLATES)).format(phrase)
    assert len(text.split()) < MAX_TOKENS
    return text
