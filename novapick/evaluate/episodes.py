"""The episode API an ``evaluate_model`` drives: plan episodes, run one, run a list."""
from __future__ import annotations

import zlib

import numpy as np
from tqdm import tqdm

from novapick.policy.vla import MAX_STEPS
from novapick.video import side_by_side


def run_episode(policy, env, seed: int, options: dict, max_steps: int = MAX_STEPS,
                frames: list | None = None, video: list | None = None, video_every: int = 2) -> dict:
    """One closed-loop episode of ``policy`` (anything with ``reset(seed)`` and
    ``select_action(obs)``); returns the final info plus 'action_jerk' (the third
    difference of the joint-velocity actions, Section 3.6's hint) and 'latency_ms_p50'.
    ``frames`` collects the wrist images; ``video`` third-person | wrist frames every
    ``video_every`` steps (for rollout videos)."""
    obs, info = env.reset(seed=seed, options=options)
    policy.reset(seed)
    actions = []
    for step in range(max_steps):
        if video is not None and step % video_every == 0:
            video.append(side_by_side(env.unwrapped.render_scene(), obs["rgb"]))
        action = policy.select_action(obs)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        if frames is not None:
            frames.append(obs["rgb"])
        if terminated or truncated:
            break
    acts = np.array(actions)[:, :7]
    info["action_jerk"] = float(np.abs(np.diff(acts, n=3, axis=0)).mean()) if len(acts) > 3 else 0.0
    latencies = getattr(policy, "latencies", None) or [np.nan]
    info["latency_ms_p50"] = float(np.median(latencies) * 1000)
    return info


def plan_episodes(object_set: list, num_episodes: int, n_items: int | tuple[int, int] = (1, 5),
                  seed: int = 0) -> list[dict]:
    """The evaluation episodes: for each object, ``num_episodes`` (seed, bin size) pairs.

    Each plan depends only on (seed, object name, repeat), so splitting the objects across
    worker processes gives exactly the episodes a single process would run."""
    plans = []
    for name in object_set:
        for j in range(num_episodes):
            rng = np.random.default_rng([seed, zlib.crc32(str(name).encode()), j])
            k = int(rng.integers(n_items[0], n_items[1] + 1)) if isinstance(n_items, tuple) else int(n_items)
            plans.append({"object": name, "n_items": k, "seed": int(rng.integers(1 << 31))})
    return plans


def plan_options(env, plan: dict) -> dict:
    """The env.reset options of a plan: which object, its split and the bin size."""
    return {"object": plan["object"], "split": env.unwrapped.catalog.get(plan["object"]).split,
            "n_items": plan["n_items"]}


def run_planned_episodes(policy, env, plans: list[dict], progress: bool = True,
                         max_steps: int = MAX_STEPS) -> list[dict]:
    """Run the planned episodes with ``policy``; the final info of each, with its plan."""
    infos = []
    for plan in tqdm(plans, desc="evaluate", disable=not progress):
        options = plan_options(env, plan)
        info = run_episode(policy, env, plan["seed"], options, max_steps)
        info.update(object_name=plan["object"], seed=plan["seed"], options=options,
                    rehearsal_k=getattr(policy, "rehearsal_k", 0))
        infos.append(info)
    return infos
