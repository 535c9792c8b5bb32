"""Do imagined outcomes rank real ones? The check world-model rehearsal relies on.

At moments of a closed-loop episode where the policy is about to replan near the
target, the simulator and the policy are saved; K candidate chunks are sampled as
rehearsal samples them and scored by imagination (``VLAPolicy.rehearsal_scores``); then
each candidate is really executed from the saved moment (the whole chunk, then the plain
policy) and we record whether the target got held. Why the whole chunk: after the 4
steps rehearsal commits to, the plain policy made every candidate end alike (at 12 cm,
4 + 20 steps, not one of 18 moments had mixed outcomes; docs/experiments.md). The
episode itself goes on unchanged, as the plain policy runs it.

Two figures: ``outcome_auc``, the probability that a chunk that led to a grasp scores
higher than one that did not, over every pair of candidates *at the same moment*
(pairs from different moments would mostly measure that "near the grasp" scores
high, which rehearsal never has to decide); and ``outcome_auc_pooled`` over all pairs.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from novapick.evaluate.episodes import plan_options
from novapick.policy.vla import MAX_STEPS, VLAPolicy
from novapick.sim import robot as R

NEAR_TARGET_M = 0.2      # the hand within 20 cm of the target's top: where grasps are decided
OUTCOME_STEPS = 40       # a candidate's consequence: held within 2 s of the moment
MAX_MOMENTS = 4          # moments examined per episode


def pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """P(score of a positive > score of a negative), ties counting 1/2, and the number of
    (positive, negative) pairs; (nan, 0) without both kinds."""
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), 0
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean()), diff.size


def near_target(env) -> bool:
    """Is the hand close above the target (and nothing held yet)?"""
    cell = env.unwrapped
    if cell.gripper.state.held_body is not None:
        return False
    hand, _ = R.hand_pose(cell.client, cell.robot)
    aabb = cell.privileged_state()["target_aabb"]
    top = np.array([(aabb[0][0] + aabb[1][0]) / 2, (aabb[0][1] + aabb[1][1]) / 2, aabb[1][2]])
    return float(np.linalg.norm(hand - top)) < NEAR_TARGET_M


def _held_after(policy: VLAPolicy, env, obs: dict, first: np.ndarray, steps: int) -> bool:
    """Execute ``first`` (the candidate's first actions), then the plain policy, for up
    to ``steps`` steps; was the target held?"""
    policy.queue = list(first)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(policy.select_action(obs))
        if env.unwrapped.stats.target_was_held or terminated or truncated:
            break
    return bool(env.unwrapped.stats.target_was_held)


def rank_outcomes_at(policy: VLAPolicy, env, obs: dict, k: int, steps: int = OUTCOME_STEPS,
                     commit_steps: int | None = None) -> dict:
    """At the current moment (the policy about to replan): K candidates' imagined scores
    and real outcomes, each candidate executed for ``commit_steps`` (default: its whole
    chunk) before the plain policy takes over. Leaves the simulator and the policy as
    they were."""
    cell = env.unwrapped
    saved_policy, saved_env = policy.snapshot(), cell.snapshot()
    try:
        policy.observe(obs)
        chunks = policy.sample_chunks(policy.current_condition(), k)
        scores = policy.rehearsal_scores(chunks).cpu().numpy()
        held = []
        for chunk in chunks.cpu().numpy():     # each future starts from the saved moment
            cell.restore(saved_env)
            policy.restore(saved_policy)
            held.append(_held_after(policy, env, obs, chunk[: commit_steps or len(chunk)], steps))
    finally:
        cell.restore(saved_env)
        cell.drop_snapshot(saved_env)
        policy.restore(saved_policy)
    return {"scores": scores, "held": np.array(held)}


def episode_moments(policy: VLAPolicy, env, plan: dict, k: int = 4, max_moments: int = MAX_MOMENTS,
                    steps: int = OUTCOME_STEPS, max_steps: int = MAX_STEPS,
                    commit_steps: int | None = None) -> list[dict]:
    """One planned episode with the plain policy; at up to ``max_moments`` replans near
    the target, K candidates ranked (:func:`rank_outcomes_at`). The moments, in order."""
    obs, _ = env.reset(seed=plan["seed"], options=plan_options(env, plan))
    policy.reset(plan["seed"])
    moments = []
    for _ in range(max_steps):
        if not policy.queue and len(moments) < max_moments and near_target(env):
            moments.append(rank_outcomes_at(policy, env, obs, k, steps, commit_steps))
        obs, _, terminated, truncated, _ = env.step(policy.select_action(obs))
        if terminated or truncated:
            break
    return moments


def summarise_moments(moments: list[dict]) -> dict:
    """'outcome_auc' (same-moment pairs), 'outcome_auc_pooled', 'outcome_moments'
    (moments examined), 'outcome_mixed_moments' (moments where some candidates led to a
    grasp and some did not: only these decide the same-moment AUC), 'outcome_pairs',
    'outcome_held_rate', 'outcome_best_held' / 'outcome_plain_held' (at mixed moments:
    how often the top-scored candidate / candidate 0, the plain policy's chunk, led to a
    grasp)."""
    same, weights, best, plain = [], [], [], []
    for m in moments:
        auc, pairs = pairwise_auc(m["scores"], m["held"])
        if pairs:
            same.append(auc)
            weights.append(pairs)
            best.append(m["held"][int(np.argmax(m["scores"]))])
            plain.append(m["held"][0])
    scores = np.concatenate([m["scores"] for m in moments]) if moments else np.zeros(0)
    held = np.concatenate([m["held"] for m in moments]) if moments else np.zeros(0, bool)
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    return {"outcome_auc": float(np.average(same, weights=weights)) if same else float("nan"),
            "outcome_auc_pooled": pairwise_auc(scores, held)[0],
            "outcome_moments": len(moments), "outcome_mixed_moments": len(same),
            "outcome_pairs": int(sum(weights)), "outcome_held_rate": mean(held),
            "outcome_best_held": mean(best), "outcome_plain_held": mean(plain)}


def outcome_ranking(policy: VLAPolicy, env, plans: list[dict], k: int = 4, max_moments: int = MAX_MOMENTS,
                    steps: int = OUTCOME_STEPS, progress: bool = True, max_steps: int = MAX_STEPS,
                    commit_steps: int | None = None) -> dict:
    """:func:`episode_moments` of every plan in this process, :func:`summarise_moments`
    of them all (novapick.pipeline runs the plans over worker processes instead)."""
    moments = [m for plan in tqdm(plans, desc="outcome ranking", disable=not progress)
               for m in episode_moments(policy, env, plan, k, max_moments, steps, max_steps, commit_steps)]
    return summarise_moments(moments)
