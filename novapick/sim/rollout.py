"""Running the scripted expert for one episode and recording it as a demonstration."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from novapick.sim import robot as R
from novapick.sim.catalog import resting_extents
from novapick.sim.expert import ScriptedExpert, grasp_pose_vector
from novapick.video import side_by_side

PERTURB_STD = 0.08        # std of the execution noise on normalised joint velocities
PERTURB_SMOOTHING = 0.7   # AR(1) coefficient: smooth, drifting pushes rather than white jitter
TAKEOVER_MARGIN = 8       # steps (0.4 s) before the policy's episode ended: where a replay takes over


@dataclass
class Episode:
    """One demonstration; observation t is the one *before* action t. T = steps executed.

    rgb (T, 3, H, W) uint8 · depth (T, 1, H, W) float32 metres (0 = invalid) ·
    proprio (T, 14) · gripper_state (T, 2) · action (T, 10) clean expert labels ·
    reward (T,) · grasp (T,) 1.0 where the target is held after the step ·
    target_uv (T, 3) where the target's centre is in the wrist image: (u, v) in [-1, 1] and
    an in-view flag (privileged supervision for where the policy should look).
    """

    rgb: np.ndarray
    depth: np.ndarray
    proprio: np.ndarray
    gripper_state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    grasp: np.ndarray
    instruction: str
    meta: dict = field(default_factory=dict)
    target_uv: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.action)


def run_expert_episode(env, seed: int, options: dict, perturb: bool = False, record: bool = True,
                       force_mode: str | None = None, video_every: int = 0, policy=None, takeover_step: int = 0
                       ) -> tuple[dict, list[dict], list[np.ndarray]]:
    """Run the expert to the end of one episode.

    Returns (final info, recorded steps, video frames: third-person view | wrist view). Each recorded step is
    a dict with the observation before the action, the clean action and its outcome.
    With ``perturb`` the *executed* action gets smooth noise (seeded from ``seed``) while
    the clean expert action is what gets recorded.

    With a ``policy`` (an object with ``reset(seed)`` and ``select_action(obs) -> (10,)``)
    the policy drives the first ``takeover_step`` steps, unrecorded, and the expert takes
    over from wherever it left the arm (:meth:`ScriptedExpert.take_over`): the recorded
    steps are the expert's corrections of the states *the policy* reaches (DAgger). If the
    policy ends the episode before that step, nothing is recorded; ``info["takeover"]``
    says what happened ("approach", "descend" or "policy_finished").
    """
    obs, info = env.reset(seed=seed, options=options)
    if policy is not None:
        obs, info = _drive(env, policy, seed, obs, info, takeover_step)
    expert = ScriptedExpert(env, force_mode=force_mode, seed=seed)
    takeover = None
    if policy is not None:
        takeover = "policy_finished" if info["success"] or info["failure"] else expert.take_over()
    first_plan = expert.plan
    noise_rng = np.random.default_rng([seed, 7])
    noise = np.zeros(R.NUM_ARM_JOINTS)
    steps, frames = [], []
    done = takeover == "policy_finished"
    while not done:
        action = expert.act(obs)
        executed = action.copy()
        if perturb and expert.phase == "approach":  # the final descent stays clean: safety stops otherwise
            noise = PERTURB_SMOOTHING * noise + PERTURB_STD * noise_rng.standard_normal(R.NUM_ARM_JOINTS)
            executed[:R.NUM_ARM_JOINTS] = np.clip(action[:R.NUM_ARM_JOINTS] + noise, -1, 1)
        if video_every and info["steps"] % video_every == 0:
            frames.append(side_by_side(env.unwrapped.render_scene(), obs["rgb"]))
        target_uv = env.unwrapped.target_in_wrist_image() if record else None  # where obs shows the target
        next_obs, reward, terminated, truncated, info = env.step(executed)
        if record:
            steps.append({"obs": obs, "action": action.astype(np.float32), "reward": reward,
                          "grasp": float(info["held_object"] == info["target_name"]), "target_uv": target_uv})
        obs, done = next_obs, terminated or truncated
    if video_every:
        frames.append(side_by_side(env.unwrapped.render_scene(), obs["rgb"]))
    spec = env.unwrapped.target.spec
    info["grasp_pose"] = grasp_pose_vector(first_plan, resting_extents(spec.geometry, spec.dims)[1])
    if takeover is not None:
        info["takeover"] = takeover
    return info, steps, frames


def _drive(env, policy, seed: int, obs: dict, info: dict, steps: int) -> tuple[dict, dict]:
    """Let ``policy`` act for up to ``steps`` steps (or until the episode ends)."""
    policy.reset(seed)
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(policy.select_action(obs))
        if terminated or truncated:
            break
    return obs, info


def record_expert_episode(env, seed: int, object_name: str | int | None, split: str, n_items: int,
                          perturb: bool = False, policy=None, takeover_step: int = 0) -> Episode:
    """Record one expert demonstration in the course's episode format (see :class:`Episode`).
    With a ``policy``: the expert's corrections after ``takeover_step`` steps of the policy
    (see :func:`run_expert_episode`); ``meta["takeover_step"]`` is the step it took over."""
    options = {"object": object_name, "split": split, "n_items": n_items}
    info, steps, _ = run_expert_episode(env, seed, options, perturb=perturb, policy=policy,
                                        takeover_step=takeover_step)
    while not steps:
        # The policy ended the episode first (a success, or a failure such as a collision):
        # replay it (same seed, same policy: the same steps) and take over a little
        # earlier. After a failure this records the correction that would have avoided it.
        takeover_step = max(0, info["steps"] - TAKEOVER_MARGIN)
        info, steps, _ = run_expert_episode(env, seed, options, perturb=perturb, policy=policy,
                                            takeover_step=takeover_step)
    spec = env.unwrapped.target.spec
    stack = lambda key: np.stack([s["obs"][key] for s in steps])  # noqa: E731
    return Episode(
        rgb=np.round(stack("rgb") * 255).astype(np.uint8),
        depth=stack("depth").astype(np.float32),
        proprio=stack("proprio").astype(np.float32),
        gripper_state=stack("gripper_state").astype(np.float32),
        action=np.stack([s["action"] for s in steps]).astype(np.float32),
        reward=np.array([s["reward"] for s in steps], np.float32),
        grasp=np.array([s["grasp"] for s in steps], np.float32),
        instruction=steps[0]["obs"]["instruction"],
        target_uv=np.stack([s["target_uv"] for s in steps]).astype(np.float32),
        meta={"seed": seed, "object_name": spec.name, "object_id": spec.id, "split": split,
              "n_items": n_items, "perturbed": perturb, "success": bool(info["success"]),
              "failure": info["failure"], "cycle_time_s": info["cycle_time_s"],
              "image_size": int(env.unwrapped.height), "category": spec.category,
              "colour": spec.colour, "material": spec.material, "best_mode": spec.best_mode,
              "grasp_pose": info["grasp_pose"],
              **({"takeover_step": takeover_step, "takeover": info["takeover"]} if policy is not None else {})},
    )
