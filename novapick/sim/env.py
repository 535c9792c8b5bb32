"""The NovaPick cell as a Gymnasium environment.

One episode: a bin holds 1-30 items from one catalog split; the instruction names the
target; the policy streams 20 Hz actions until the target is lifted 10 cm above the bin
floor and held for 0.5 s (success), something goes wrong (failure), or 200 steps pass.

``action``: (10,) or a chunk (T, 10): 7 joint velocities normalised to [-1, 1] by the
per-joint limits, then 3 gripper-mode logits {suction, parallel_jaw, release} (argmax).
A chunk is executed step by step and only the last observation is rendered, which is
how a chunked policy ("execute 4 of 16, then replan") runs fast.

``obs``: rgb (3, H, W) float32 [0, 1]; depth (1, H, W) float32 metres, 0 = invalid;
instruction str; proprio (14,) = 7 joint angles (rad) + 7 joint velocities (rad/s);
gripper_state (2,) = suction pressure [0, 1] + jaw aperture (m).

Failure categories (``info["failure"]``, Section 3.7):
  grasp_slip   the target was held, then slipped out before the lift was complete
  miss         the episode ran out without the gripper ever touching the target
  wrong_object another item was grasped and lifted
  collision    a safety stop: excessive contact force or a joint limit halted the arm
  timeout      the target was touched but not picked within the step budget
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pybullet as p

from novapick.sim import robot as R
from novapick.sim.camera import Lighting, project_to_wrist_image, render_scene, render_wrist
from novapick.sim.catalog import CATALOG_SEED, FRAGILE_LIMIT_N, ObjectSpec, jittered_spec, load_catalog
from novapick.sim.gripper import HybridGripper
from novapick.sim.language import make_instruction
from novapick.sim.objects import half_height, resting_orientation
from novapick.sim.world import (BIN_CENTER, BIN_HALF, FLOOR_Z, MAX_ITEMS, TARGET_MARGIN, Item, build_cell,
                                pile_height, settle, spawn_items, target_in_reach)

LIFT_HEIGHT_M = 0.10         # success: the target's lowest point this far above the floor
HOLD_STEPS = 10              # ... held for 0.5 s (10 control steps)
MAX_EPISODE_STEPS = 200      # Section 3.6: at most 200 steps
COLLISION_FORCE_N = 1.0      # contact above this force counts as an (unplanned) collision
SAFETY_FORCE_N = 80.0        # contact above this force triggers a safety stop
JOINT_LIMIT_MARGIN = 0.005   # rad: closer than this to a limit, moving outwards -> stop
HALT_SPEED = 0.05            # rad/s: the arm counts as halted below this joint speed
BRAKE_TORQUE_SCALE = 1.0     # a safety stop brakes with the motors' own torque limit
MAX_HALT_SUBSTEPS = 120      # 0.5 s of physics: a halt that takes longer is reported as 0.5 s
REWARD_HOLDING = 0.05        # per step while the target is held (dense signal for the WM)
REWARD_SUCCESS = 1.0
FAILURES = ("grasp_slip", "miss", "wrong_object", "collision", "timeout")


def validate_action(action) -> np.ndarray:
    """Return the action as a float64 (T, 10) array or raise a ValueError saying why."""
    if hasattr(action, "detach"):  # a torch tensor, possibly on the GPU
        action = action.detach().cpu().numpy()
    a = np.asarray(action, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != R.ACTION_DIM or a.shape[0] == 0:
        raise ValueError(f"expected action of shape ({R.ACTION_DIM},) or (T, {R.ACTION_DIM}) "
                         f"with T >= 1, got {np.shape(action)}")
    bad = ~np.isfinite(a)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ValueError(f"action contains NaN/inf (first at step {t}, entry {j}); expected finite "
                         "values: 7 joint velocities in [-1, 1] and 3 gripper-mode logits")
    worst = np.abs(a[:, :R.NUM_ARM_JOINTS]).max()
    if worst > 1.0 + 1e-6:
        raise ValueError(f"joint velocities must be normalised to [-1, 1], got max |v| = {worst:.3f}; "
                         "clip them, e.g. action[..., :7].clip(-1, 1)")
    return a


@dataclass
class EpisodeStats:
    steps: int = 0
    success: bool = False
    failure: str | None = None
    cycle_time_s: float | None = None
    hold_steps: int = 0
    collisions: int = 0
    damage: bool = False
    safety_stop: str | None = None
    halt_time_s: float | None = None
    target_contacted: bool = False
    target_was_held: bool = False
    jerk_sum: float = 0.0


class NovaPickEnv(gym.Env):
    """PyBullet pick-and-place cell with a Panda arm, a hybrid gripper and a wrist RGB-D camera.

    Args:
        image_size: wrist image size: an int for square images (quick profile: 96) or
            (height, width), e.g. (480, 640) as in Section 2.
        max_steps: control steps before truncation (200 = 10 s).
        split / n_items: defaults for ``reset`` (``options`` override them).
        depth_noise, random_lighting: sensor realism; switch off for clean debugging.
        render_mode: "rgb_array" makes ``render()`` return a third-person frame.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": R.CONTROL_HZ}

    def __init__(self, image_size: int | tuple[int, int] = 96, max_steps: int = MAX_EPISODE_STEPS,
                 split: str = "known", n_items: int = 1, depth_noise: bool = True,
                 random_lighting: bool = True, render_mode: str | None = None,
                 catalog_seed: int = CATALOG_SEED):
        super().__init__()
        self.height, self.width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.max_steps, self.default_split, self.default_items = max_steps, split, n_items
        self.depth_noise, self.random_lighting, self.render_mode = depth_noise, random_lighting, render_mode
        self.catalog = load_catalog(catalog_seed)
        H, W = self.height, self.width
        self.observation_space = gym.spaces.Dict({
            "rgb": gym.spaces.Box(0.0, 1.0, (3, H, W), np.float32),
            "depth": gym.spaces.Box(0.0, 10.0, (1, H, W), np.float32),
            "instruction": gym.spaces.Text(max_length=256, charset=" abcdefghijklmnopqrstuvwxyz"),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (R.PROPRIO_DIM,), np.float32),
            "gripper_state": gym.spaces.Box(0.0, 1.0, (2,), np.float32),
        })
        low = np.r_[-np.ones(R.NUM_ARM_JOINTS), -np.inf * np.ones(3)].astype(np.float32)
        self.action_space = gym.spaces.Box(low, -low, (R.ACTION_DIM,), np.float32)
        self.client = p.connect(p.DIRECT)
        p.setPhysicsEngineParameter(fixedTimeStep=1.0 / R.PHYSICS_HZ, deterministicOverlappingPairs=1,
                                    physicsClientId=self.client)
        p.setGravity(0, 0, -9.81, physicsClientId=self.client)
        self.robot = R.load_panda(self.client)
        self._arm_colours = R.arm_colours(self.client, self.robot)
        R.set_arm_visible(self.client, self.robot, self._arm_colours, False)
        self.cell = build_cell(self.client)
        self.gripper = HybridGripper(self.client, self.robot)
        self.items: list[Item] = []
        self.specs: dict[int, ObjectSpec] = {}
        self.target: Item | None = None
        self.instruction = ""
        self.lighting = Lighting()
        self.stats = EpisodeStats()
        self._dq_hist = np.zeros((3, R.NUM_ARM_JOINTS))
        self._force_filter = 0.0
        self._sensor_rng = np.random.default_rng(0)

    # ---- episode setup ----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode. ``options``: object (name or id; default: random from the split),
        split ("known" | "novel"), n_items (1-30, target included), shape_jitter (default
        0: catalog sizes; > 0 rescales every item, see ``catalog.jittered_spec``)."""
        super().reset(seed=seed)
        options = dict(options or {})
        split = options.get("split", self.default_split)
        n_items = int(options.get("n_items", self.default_items))
        if not 1 <= n_items <= MAX_ITEMS:
            raise ValueError(f"n_items must be in [1, {MAX_ITEMS}], got {n_items}")
        pool = self.catalog.split(split)
        rng = np.random.default_rng(self.np_random.integers(1 << 63))
        target = self.catalog.get(options["object"]) if options.get("object") is not None \
            else pool[int(rng.integers(len(pool)))]
        distractors = self._pick_distractors(rng, pool, target, n_items - 1)
        jitter = float(options.get("shape_jitter", 0.0))
        if jitter:  # training scenes only: resize every item (its own stream: jitter 0 changes nothing)
            size_rng = np.random.default_rng(rng.integers(1 << 63))
            target = jittered_spec(target, size_rng, jitter)
            distractors = [jittered_spec(d, size_rng, jitter) for d in distractors]

        self.gripper.reset()  # first: its constraint refers to a body about to be removed
        for item in self.items:
            p.removeBody(item.body, physicsClientId=self.client)
        R.reset_arm(self.client, self.robot)
        R.command_arm_velocity(self.client, self.robot, np.zeros(R.NUM_ARM_JOINTS))
        self.items = spawn_items(self.client, rng, distractors, target)
        self.specs = {it.body: it.spec for it in self.items}
        self.target = self.items[-1]
        settle(self.client, self.items)
        for _ in range(3):  # a target that slid off the pile towards a wall is put back
            if target_in_reach(self.client, self.target):
                break
            self._redrop_target(rng)
        R.reset_arm(self.client, self.robot)  # undo any drift while the items settled

        positions = {it.body: p.getBasePositionAndOrientation(it.body, physicsClientId=self.client)[0]
                     for it in self.items}
        others = [(it.spec, positions[it.body][1]) for it in self.items[:-1]]
        self.instruction = make_instruction(target, positions[self.target.body][1], others, rng)
        self.lighting = Lighting.random(rng) if self.random_lighting else Lighting()
        self._sensor_rng = np.random.default_rng(rng.integers(1 << 63))
        self.stats = EpisodeStats()
        self._dq_hist = np.zeros((3, R.NUM_ARM_JOINTS))
        self._force_filter = 0.0
        return self._observe(), self._info()

    def _redrop_target(self, rng: np.random.Generator) -> None:
        half = BIN_HALF - TARGET_MARGIN
        xy = rng.uniform(BIN_CENTER - half, BIN_CENTER + half)
        z = pile_height(self.client, xy, 0.05) + half_height(self.target.spec) + 0.005
        orn = resting_orientation(self.target.spec, float(rng.uniform(-np.pi, np.pi)))
        p.resetBasePositionAndOrientation(self.target.body, [xy[0], xy[1], z], orn, physicsClientId=self.client)
        settle(self.client, self.items)

    def _pick_distractors(self, rng: np.random.Generator, pool: list[ObjectSpec],
                          target: ObjectSpec, k: int) -> list[ObjectSpec]:
        """k distractors from the split; often one of the target's category, so that the
        instruction needs colour or left/right to be unambiguous."""
        others = [o for o in pool if o.name != target.name]
        chosen = [others[int(i)] for i in rng.integers(len(others), size=k)]
        same = [o for o in others if o.category == target.category]
        if k and same and rng.random() < 0.3:
            chosen[0] = same[int(rng.integers(len(same)))]
        return chosen

    # ---- stepping ---------------------------------------------------------------------
    def step(self, action):
        actions = validate_action(action)
        if self.target is None:
            raise RuntimeError("call reset() before step()")
        if self.stats.success or self.stats.failure is not None:
            raise RuntimeError("the episode has ended; call reset()")
        reward, terminated, truncated = 0.0, False, False
        for a in actions:
            reward += self._control_step(a)
            terminated = self.stats.success or (self.stats.failure is not None
                                                and self.stats.failure not in ("miss", "timeout"))
            truncated = not terminated and self.stats.failure in ("miss", "timeout")
            if terminated or truncated:
                break
        return self._observe(), reward, terminated, truncated, self._info()

    def _control_step(self, a: np.ndarray) -> float:
        """One 20 Hz step: set the gripper mode, stream the joint velocities for 12
        physics substeps while watching contacts, then score the outcome."""
        st = self.stats
        self.gripper.set_mode(R.GRIPPER_MODES[int(np.argmax(a[R.NUM_ARM_JOINTS:]))])
        velocity = a[:R.NUM_ARM_JOINTS] * R.ARM_MAX_VELOCITY
        R.command_arm_velocity(self.client, self.robot, velocity)
        collided = False
        for sub in range(R.SUBSTEPS):
            p.stepSimulation(physicsClientId=self.client)
            collided |= self._watch_contacts()
            if st.safety_stop is None:
                st.safety_stop = self._joint_limit_violation(velocity)
            if st.safety_stop is not None:
                self._halt()
                break
        st.steps += 1
        st.collisions += int(collided)
        self.gripper.update(self.specs)
        q, dq = R.arm_state(self.client, self.robot)
        self._dq_hist = np.roll(self._dq_hist, 1, axis=0)
        self._dq_hist[0] = dq
        st.jerk_sum += self.step_jerk()
        return self._score()

    def _watch_contacts(self) -> bool:
        """Check robot contacts after a substep: collisions, damage and force safety stops."""
        collided, peak = False, 0.0
        held = self.gripper.state.held_body
        for c in p.getContactPoints(bodyA=self.robot, physicsClientId=self.client):
            body, force = c[2], c[9]
            if body == self.target.body:
                self.stats.target_contacted = True
            spec = self.specs.get(body)
            if spec is not None and spec.material == "fragile" and force > FRAGILE_LIMIT_N:
                self.stats.damage = True
            if body in (self.target.body, held):
                planned = True  # touching what we are picking is the point
            else:
                planned = False
            if not planned and force > COLLISION_FORCE_N:
                collided = True
            peak = max(peak, force)
        # Like a real arm's collision detector (a filtered external-force estimate), the
        # stop reacts to sustained force, not to a single 4 ms contact spike.
        self._force_filter = 0.7 * self._force_filter + 0.3 * peak
        if self._force_filter > SAFETY_FORCE_N and self.stats.safety_stop is None:
            self.stats.safety_stop = "excessive_force"
        return collided

    def _joint_limit_violation(self, velocity: np.ndarray) -> str | None:
        q, _ = R.arm_state(self.client, self.robot)
        at_low = (q < R.ARM_JOINT_LOWER + JOINT_LIMIT_MARGIN) & (velocity < 0)
        at_high = (q > R.ARM_JOINT_UPPER - JOINT_LIMIT_MARGIN) & (velocity > 0)
        return "joint_limit" if (at_low | at_high).any() else None

    def _halt(self) -> None:
        """Safety stop: brake every joint at full torque and time how long it takes."""
        R.command_arm_velocity(self.client, self.robot, np.zeros(R.NUM_ARM_JOINTS), BRAKE_TORQUE_SCALE)
        for k in range(1, MAX_HALT_SUBSTEPS + 1):  # the time it really takes (the bar is 50 ms)
            p.stepSimulation(physicsClientId=self.client)
            _, dq = R.arm_state(self.client, self.robot)
            if np.abs(dq).max() < HALT_SPEED:
                break
        self.stats.halt_time_s = k / R.PHYSICS_HZ

    def _score(self) -> float:
        st, held = self.stats, self.gripper.state.held_body
        reward = 0.0
        if st.safety_stop is not None:
            st.failure = "collision"
            return reward
        if held == self.target.body:
            st.target_was_held = True
            reward += REWARD_HOLDING
            if self._lowest_point(held) >= FLOOR_Z + LIFT_HEIGHT_M:
                if st.cycle_time_s is None:
                    st.cycle_time_s = st.steps * R.CONTROL_DT
                st.hold_steps += 1
                if st.hold_steps >= HOLD_STEPS:
                    st.success = True
                    return reward + REWARD_SUCCESS
            else:
                st.hold_steps = 0
        elif held is not None and self._lowest_point(held) >= FLOOR_Z + LIFT_HEIGHT_M:
            st.failure = "wrong_object"
        elif self.gripper.state.slipped_body == self.target.body:
            st.failure = "grasp_slip"
        if st.failure is None and st.steps >= self.max_steps:
            st.failure = "timeout" if st.target_contacted else "miss"
        return reward

    def _lowest_point(self, body: int) -> float:
        return p.getAABB(body, physicsClientId=self.client)[0][2]

    def step_jerk(self) -> float:
        """Mean absolute joint jerk (rad/s^3) of the last control step, from the measured
        joint velocities: (v_t - 2 v_{t-1} + v_{t-2}) / dt^2."""
        v = self._dq_hist
        return float(np.abs(v[0] - 2 * v[1] + v[2]).mean() / R.CONTROL_DT ** 2)

    # ---- observation & info -----------------------------------------------------------
    def _observe(self) -> dict:
        q, dq = R.arm_state(self.client, self.robot)
        hand_pos, hand_rot = R.hand_pose(self.client, self.robot)
        transparent = {b for b, s in self.specs.items() if s.material == "transparent"}
        rgb, depth = render_wrist(self.client, hand_pos, hand_rot, self.height, self.width, self.lighting,
                                  self._sensor_rng if self.depth_noise else None, transparent)
        return {
            "rgb": np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0,
            "depth": depth[None].astype(np.float32),
            "instruction": self.instruction,
            "proprio": np.r_[q, dq].astype(np.float32),
            "gripper_state": np.array([self.gripper.suction_pressure(),
                                       R.finger_aperture(self.client, self.robot)], np.float32),
        }

    def _info(self) -> dict:
        st = self.stats
        return {
            "success": st.success, "is_success": st.success, "failure": st.failure,
            "cycle_time_s": st.cycle_time_s, "steps": st.steps, "sim_time_s": st.steps * R.CONTROL_DT,
            "jerk": self.step_jerk(), "mean_jerk": st.jerk_sum / max(st.steps, 1),
            "collisions": st.collisions, "collided": st.collisions > 0, "damage": st.damage,
            "safety_stop": st.safety_stop, "halt_time_s": st.halt_time_s,
            "target_contacted": st.target_contacted, "target_was_held": st.target_was_held,
            "held_object": self.specs[self.gripper.state.held_body].name
            if self.gripper.state.held_body is not None else None,
            "gripper_mode": self.gripper.state.mode,
            "target_name": self.target.spec.name if self.target else None,
            "target_id": self.target.spec.id if self.target else None,
            "n_items": len(self.items), "instruction": self.instruction,
        }

    # ---- save and restore: several futures from one moment -----------------------------
    def snapshot(self) -> dict:
        """The cell's whole state now: PyBullet's bodies and joints plus the env's own
        bookkeeping (episode statistics, filters, the sensor-noise stream, the gripper).
        :meth:`restore` returns to it, so that several action chunks can be executed from
        the same moment (the world model's outcome check, novapick.evaluate.outcome).

        Only while nothing is held: a held item hangs on a constraint created on the fly,
        which PyBullet's saved states do not cover. Free it with :meth:`drop_snapshot`."""
        if self.target is None:
            raise RuntimeError("call reset() before snapshot()")
        if self.gripper.state.held_body is not None:
            raise RuntimeError("snapshot() needs the gripper empty: a held item's constraint is not saved")
        own = (self.stats, self._dq_hist, self._force_filter, self._sensor_rng, self.gripper.state)
        return {"bullet": p.saveState(physicsClientId=self.client), "own": copy.deepcopy(own),
                "items": [it.body for it in self.items]}

    def restore(self, snap: dict) -> None:
        """Return to the moment of ``snap`` (taken in this episode by :meth:`snapshot`)."""
        if snap["items"] != [it.body for it in self.items]:
            raise RuntimeError("this snapshot was taken in another episode (the bin's items differ)")
        if self.gripper.state.constraint is not None:   # the future held something: let go first
            p.removeConstraint(self.gripper.state.constraint, physicsClientId=self.client)
        p.restoreState(snap["bullet"], physicsClientId=self.client)
        own = copy.deepcopy(snap["own"])
        self.stats, self._dq_hist, self._force_filter, self._sensor_rng, self.gripper.state = own

    def drop_snapshot(self, snap: dict) -> None:
        """Free PyBullet's copy of a snapshot's state."""
        p.removeState(snap["bullet"], physicsClientId=self.client)

    def render(self):
        if self.render_mode == "rgb_array":
            return self.render_scene()
        return None

    def render_scene(self, height: int = 240, width: int = 320) -> np.ndarray:
        """Third-person RGB frame (H, W, 3) uint8 of the cell, arm included (for videos)."""
        R.set_arm_visible(self.client, self.robot, self._arm_colours, True)
        frame = render_scene(self.client, height, width, self.lighting)
        R.set_arm_visible(self.client, self.robot, self._arm_colours, False)
        return frame

    def close(self) -> None:
        if self.client is not None and p.isConnected(self.client):
            p.disconnect(self.client)
        self.client = None

    # ---- privileged access (the scripted expert, tests and error analysis only) ---------
    def target_in_wrist_image(self) -> np.ndarray:
        """Where the target's centre appears in the current wrist image: (u, v, in_view),
        u, v in [-1, 1] (see :func:`novapick.sim.camera.project_to_wrist_image`). Recorded
        with each demonstration step as supervision for where the policy should look."""
        pos, _ = p.getBasePositionAndOrientation(self.target.body, physicsClientId=self.client)
        return project_to_wrist_image(np.array(pos), *R.hand_pose(self.client, self.robot))

    def privileged_state(self, body: int | None = None) -> dict:
        """Ground truth a real robot would not have: the pose, spec and AABB of the target
        (or of ``body``), and all items."""
        body = self.target.body if body is None else body
        pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        return {"target_body": body, "target_spec": self.specs[body],
                "target_position": np.array(pos), "target_orientation": np.array(orn),
                "target_aabb": np.array(p.getAABB(body, physicsClientId=self.client)),
                "items": self.items, "client": self.client, "robot": self.robot}
