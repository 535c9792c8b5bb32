"""Evaluation of a saved checkpoint over several processes (same episodes for any number).

    python -m novapick.evaluate --checkpoint artifacts/vla/last.pt --split novel --episodes-per-object 2
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from novapick.data.normalize import NormStats
from novapick.evaluate.episodes import plan_episodes, run_planned_episodes
from novapick.evaluate.summary import format_evaluation, summarize_evaluation
from novapick.policy.model import load_policy_model
from novapick.policy.vla import DEFAULT_TEMPERATURE, MAX_STEPS, VLAPolicy
from novapick.sim import make_env


def _evaluate_share(checkpoint: str, stats_path: str, max_steps: int, policy_options: dict,
                    plans: list[dict]) -> list[dict]:
    """Worker process: load the policy (``VLAPolicy(..., **policy_options)``) and its own
    simulator, run a share of the plans."""
    torch.set_num_threads(1)  # one core per worker
    model, mcfg = load_policy_model(checkpoint)
    env = make_env(mcfg.image_size)
    policy = VLAPolicy(model, mcfg, NormStats.load(stats_path), **policy_options)
    try:
        return run_planned_episodes(policy, env, plans, progress=False, max_steps=max_steps)
    finally:
        env.close()


def run_plans_in_workers(run_share, plans: list[dict], workers: int, *args) -> list[dict]:
    """Run ``run_share(*args, share)`` on ``workers`` spawned processes, each getting every
    ``workers``-th plan, and return the infos in plan order (so the result does not
    depend on the number of workers). Infos must carry 'object_name' and 'seed'."""
    shares = [share for share in (plans[i::workers] for i in range(workers)) if share]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_share, *args, share) for share in shares]
        done = [f.result() for f in tqdm(futures, desc=f"{len(plans)} episodes on {workers} workers")]
    by_plan = {(i["object_name"], i["seed"]): i for share in done for i in share}
    return [by_plan[(p["object"], p["seed"])] for p in plans]


def evaluate_checkpoint(checkpoint: str | Path, object_set: list, num_episodes: int = 1, *,
                        n_items: int | tuple[int, int] = (1, 5), seed: int = 0, rehearsal_k: int = 0,
                        workers: int = 1, stats_path: str | Path | None = None, max_steps: int = MAX_STEPS,
                        temperature: float = DEFAULT_TEMPERATURE, candidate_temperature: float = 1.0,
                        rehearsal_margin: float = 0.0) -> dict:
    """A saved checkpoint in the cell over ``workers`` processes (same episodes and
    results for any number of workers): :func:`summarize_evaluation` of its episodes."""
    checkpoint = str(checkpoint)
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"no checkpoint at {checkpoint} (train one with python -m novapick.train)")
    stats_path = str(stats_path or Path(checkpoint).parent / "stats.json")
    plans = plan_episodes(object_set, num_episodes, n_items, seed)
    options = dict(rehearsal_k=rehearsal_k, seed=seed, temperature=temperature,
                   candidate_temperature=candidate_temperature, rehearsal_margin=rehearsal_margin)
    infos = run_plans_in_workers(_evaluate_share, plans, workers, checkpoint, stats_path, max_steps, options)
    result = summarize_evaluation(infos)
    print(format_evaluation(result))
    return result
