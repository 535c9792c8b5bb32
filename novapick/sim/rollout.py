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
                       force_mode: str | None = None, video_every: int = 0
                       ) -> tuple[dict, list[dict], list[np.ndarray]]:
    """Run the expert to the end of one episode.

    Returns (final info, recorded steps, video frames: third-person view | wrist view). Each recorded step is
    a dict with the observation before the action, the clean action and its outcome.
    With ``perturb`` the *executed* action gets smooth noise (seeded from ``seed``) while
    the clean expert action is what gets recorded.
    """
    obs, info = env.reset(seed=seed, options=options)
    expert = ScriptedExpert(env, force_mode=force_mode, seed=seed)
    first_plan = expert.plan
    noise_rng = np.random.default_rng([seed, 7])
    noise = np.zeros(R.NUM_ARM_JOINTS)
    steps, frames = [], []
    done = False
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
    return info, steps, frames


def record_expert_episode(env, seed: int, object_name: str | int | None, split: str, n_items: int,
                          perturb: bool = False, shape_jitter: float = 0.0) -> Episode:
    """Record one expert demonstration in the course's episode format (see :class:`Episode`)."""
    info, steps, _ = run_expert_episode(env, seed, {"object": object_name, "split": split, "n_items": n_items,
                                                    "shape_jitter": shape_jitter}, perturb=perturb)
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
              "grasp_pose": info["grasp_pose"]},
    )
