"""Section 2 metrics, aggregated over episodes (shared by the expert, baseline and VLA)."""
from __future__ import annotations

from collections import Counter

import numpy as np

from novapick.sim.env import FAILURES


def summarize_episodes(infos: list[dict]) -> dict:
    """Aggregate final ``info`` dicts: success rate, cycle time, jerk, collision/damage rates,
    failure counts. Rates are fractions; cycle time in sim seconds over successful picks;
    jerk in rad/s^3 (mean over episodes of the per-step mean absolute joint jerk)."""
    if not infos:
        raise ValueError("no episodes to summarise")
    n = len(infos)
    cycle = [i["cycle_time_s"] for i in infos if i["success"] and i["cycle_time_s"] is not None]
    failures = Counter(i["failure"] for i in infos if i["failure"] is not None)
    return {
        "episodes": n,
        "success_rate": sum(bool(i["success"]) for i in infos) / n,
        "mean_cycle_time_s": float(np.mean(cycle)) if cycle else None,
        "mean_jerk": float(np.mean([i["mean_jerk"] for i in infos])),
        "collision_rate": sum(bool(i["collided"]) for i in infos) / n,
        "damage_rate": sum(bool(i["damage"]) for i in infos) / n,
        "safety_stop_rate": sum(i["safety_stop"] is not None for i in infos) / n,
        "failure_counts": {f: failures.get(f, 0) for f in FAILURES},
    }


def success_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a success rate (what '+- x points' means for n episodes)."""
    if n == 0:
        return (0.0, 1.0)
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (float(centre - half), float(centre + half))
