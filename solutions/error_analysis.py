"""Notebook 07 — failure analysis (Section 3.7)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from novapick.evaluate.episodes import run_episode
from novapick.sim.catalog import load_catalog
from novapick.sim.env import FAILURES

MITIGATIONS = {
    "grasp_slip": "Condition the flow head on the measured suction pressure / jaw aperture and add a grasp-"
                  "stability term (predicted hold force vs. weight); lift more gently for heavy items.",
    "miss": "Near misses dominate: train on perturbed approaches with expert relabelling (DART), weight the "
            "last centimetres of the approach more in the flow loss, and replan more often near contact.",
    "wrong_object": "Strengthen language grounding: more distractors of the same category with left/right "
                    "instructions, and a contrastive loss between the instruction and the attended patches.",
    "collision": "Add a collision-cost head to the world model and reject imagined chunks that predict "
                 "contact (rehearsal), and augment with cluttered bins near walls.",
    "timeout": "Detect stalls (no progress for 1 s) and trigger a re-grasp; the grasp head's confidence can "
               "gate a retry with the other gripper mode.",
}
ATTRIBUTES = ("category", "material", "size", "best_mode", "geometry", "split")


def correlated_properties(failed: list[dict], all_infos: list[dict], min_ratio: float = 1.5) -> list[str]:
    """Attribute values over-represented among ``failed`` episodes compared with all
    episodes, e.g. 'material=transparent (45% of these failures vs 20% of episodes, 2.3x)'."""
    catalog = load_catalog()
    spec = {i["object_name"]: catalog.get(i["object_name"]) for i in all_infos}
    out = []
    for attr in ATTRIBUTES:
        base = Counter(getattr(spec[i["object_name"]], attr) for i in all_infos)
        fail = Counter(getattr(spec[i["object_name"]], attr) for i in failed)
        for value, n in fail.most_common():
            share, base_share = n / len(failed), base[value] / len(all_infos)
            if n >= 2 and share / base_share >= min_ratio:
                out.append(f"{attr}={value} ({share:.0%} of these failures vs {base_share:.0%} of episodes, "
                           f"{share / base_share:.1f}x)")
    return out


def analyze_failures(eval_results: dict, model: dict, eval_env, *, out_dir: str | Path = "artifacts/failures",
                     examples: int = 3) -> dict:
    """Categorise the failed episodes of ``evaluate_model``'s results (info['failure'])
    and, per category: count, fraction of failures, correlated object properties, a
    mitigation, and ``examples`` replayed episodes whose first / middle / last wrist
    frames are saved as PNG."""
    infos = eval_results["infos"]
    failed = [i for i in infos if not i["success"]]
    policy = eval_results.get("policy")
    out_dir = Path(out_dir)
    report = {}
    for category in FAILURES:
        cases = [i for i in failed if i["failure"] == category]
        saved = []
        if policy is not None:
            for case in cases[:examples]:
                frames: list[np.ndarray] = []
                run_episode(policy, eval_env, case["seed"], case["options"], frames=frames)
                for tag, idx in (("start", 0), ("middle", len(frames) // 2), ("end", len(frames) - 1)):
                    path = out_dir / category / f"{case['object_name']}_{case['seed']}_{tag}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    imageio.imwrite(path, (np.asarray(frames[idx]).transpose(1, 2, 0) * 255).astype(np.uint8))
                    saved.append(str(path))
        report[category] = {
            "count": len(cases),
            "fraction": len(cases) / max(len(failed), 1),
            "correlated_properties": correlated_properties(cases, infos) if cases else [],
            "mitigation": MITIGATIONS[category],
            "example_frames": saved,
        }
    return report
