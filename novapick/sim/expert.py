"""A privileged scripted expert: the demonstrator behind every synthetic episode.

It reads the ground-truth target pose and attributes (which no policy sees), picks the
best gripper mode, and drives the arm through minimum-jerk segments (suction picks end
with a slow guarded creep until the cup seals):

    approach (above the target) -> descend -> [creep, suction only, through the seal] -> grasp (dwell, settle) -> lift

Each control step it converts the Cartesian reference into joint angles with inverse
kinematics and emits **exactly the policy's action format**: 7 normalised joint
velocities + 3 mode logits (+1 for the chosen mode, -1 for the others). Its episodes are
therefore demonstrations a policy can imitate directly.

The controller is closed-loop (feed-forward velocity + feedback on the tracking error),
so it recovers from disturbances. That is what the *perturbed* variant exploits: noise
is added to the executed action while the clean expert action is recorded as the label
(DART-style data: the policy sees states slightly off the ideal path together with the
action that corrects them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from novapick.sim import robot as R
from novapick.sim.catalog import JAW_MAX_WIDTH, ObjectSpec
from novapick.sim.objects import resting_up, surface_points
from novapick.sim.world import FLOOR_Z

APPROACH_HEIGHT = 0.10      # m above the grasp point before descending
LIFT_HEIGHT = 0.20          # m the grasp point rises after grasping
APPROACH_SPEED = 0.45       # m/s average along a segment
DESCEND_TIME = 0.5          # s
LIFT_TIME = 0.9             # s: gentle, so lifting acceleration stays under 0.3 g
GRASP_DWELL_MAX = 8         # control steps to wait for a seal / pinch before retrying
SETTLE_STEPS = 4            # control steps held still once sealed / pinched, before the lift (see act)
FOLLOW_THROUGH_STEPS = 3    # control steps the creep goes on once sealed, before the settle (see act)
CREEP_HEIGHT = (0.01, 0.04)  # m: suction picks stop this far above the grasp point (drawn per pick) ...
CREEP_SPEED = 0.03          # m/s: ... then creep down at constant speed with the pump on until the cup seals,
CREEP_OVERRUN = 0.010       # m: going at most this far past the planned point
SUCTION_GAP = 0.004         # m between the cup lip and the surface at the grasp point
FEEDBACK_GAIN = 0.5         # fraction of the tracking error corrected per step
MAX_RETRIES = 2
GRASP_TARGET_OFFSET = 0.105  # hand frame -> grasp-target link (the IK point)


def min_jerk(s: float) -> float:
    """Minimum-jerk time scaling: 0 -> 1 with zero velocity and acceleration at both ends."""
    s = min(max(s, 0.0), 1.0)
    return 10 * s ** 3 - 15 * s ** 4 + 6 * s ** 5


@dataclass
class Segment:
    """A minimum-jerk move of the grasp point from ``start`` to ``end`` (m) while the
    tool turns from ``q0`` to ``q1`` (quaternions, slerp). ``constant_speed`` makes it a
    guarded move instead: the same speed all the way, no slowing down near ``end``."""

    start: np.ndarray
    end: np.ndarray
    q0: np.ndarray
    q1: np.ndarray
    duration: float
    constant_speed: bool = False

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        s = min(max(t / self.duration, 0.0), 1.0) if self.constant_speed else min_jerk(t / self.duration)
        q = p.getQuaternionSlerp(self.q0.tolist(), self.q1.tolist(), s)
        return self.start + s * (self.end - self.start), np.array(q)


@dataclass
class GraspPlan:
    point: np.ndarray        # (3,) grasp-target link position at the grasp
    orientation: np.ndarray  # (4,) tool quaternion at the grasp
    approach: np.ndarray     # (3,) unit approach direction (straight down, or along -normal)
    mode: str                # "suction" or "parallel_jaw"
    clearance_z: float       # height the approach must stay above before descending


def mode_action(mode: str) -> np.ndarray:
    """The 3 gripper logits that select ``mode``: +1 for it, -1 for the others."""
    return np.array([1.0 if m == mode else -1.0 for m in R.GRIPPER_MODES])


def _wrap_half_turn(angle: float) -> float:
    """Map to [-pi/2, pi/2): a parallel jaw is symmetric under a half turn."""
    return (angle + np.pi / 2) % np.pi - np.pi / 2


class ScriptedExpert:
    """Closed-loop scripted picker. ``force_mode`` ("suction", "parallel_jaw" or "wrong")
    overrides the best gripper mode (used to show that the mode matters); ``offset`` shifts the grasp point (scripted misses);
    ``pick_body`` makes it pick another item than the target (scripted wrong picks)."""

    def __init__(self, env, force_mode: str | None = None, offset: np.ndarray | None = None,
                 pick_body: int | None = None, seed: int = 0):
        self.env = env.unwrapped if hasattr(env, "unwrapped") else env
        self.rng = np.random.default_rng([seed, 11])   # creep heights
        self.force_mode = force_mode
        self.pick_body = pick_body
        self.offset = np.zeros(3) if offset is None else np.asarray(offset, dtype=float)
        self.reset()

    # ---- planning ---------------------------------------------------------------------
    def reset(self) -> None:
        """Call after ``env.reset``: plans the approach from the current state."""
        self.phase, self.t, self.dwell, self.retries = "approach", 0.0, 0, 0
        self.settled = 0   # consecutive grasp-phase steps with the item held
        self.sealed_steps = 0   # consecutive creep steps with the cup sealed (the follow-through)
        self._ik_bias, self._last_ref = np.zeros(3), None
        self.plan: GraspPlan | None = None
        self.segment: Segment | None = None
        if getattr(self.env, "target", None) is not None:
            self._plan_approach()

    def _tcp(self) -> tuple[np.ndarray, np.ndarray]:
        """Current grasp-point position (3,) and tool quaternion (4,)."""
        return R.grasp_target_pose(self.env.client, self.env.robot)

    def grasp_plan(self) -> GraspPlan:
        """Where and how to grasp the target, from privileged state."""
        priv = self.env.privileged_state(self.pick_body)
        spec: ObjectSpec = priv["target_spec"]
        mode = self.force_mode or spec.best_mode
        if mode == "wrong":  # the other mode than the best one: shows that the choice matters
            mode = "parallel_jaw" if spec.best_mode == "suction" else "suction"
        pos, orn = priv["target_position"], priv["target_orientation"]
        rot = np.array(p.getMatrixFromQuaternion(orn.tolist())).reshape(3, 3)
        pts = surface_points(spec) @ rot.T + pos            # (N, 3) world surface points
        top = float(priv["target_aabb"][1][2])
        down = np.array([0.0, 0.0, -1.0])
        if mode == "suction":
            spot, normal = self._suction_spot(priv["target_body"], pos, top)
            # Approach along the surface normal (a tilted item is met square-on), at most
            # 35 degrees off vertical so the wrist stays well inside its range.
            approach = self._tilted_approach(normal, max_tilt=np.radians(25))
            point = spot - approach * (R.SUCTION_TIP_OFFSET - GRASP_TARGET_OFFSET + SUCTION_GAP)
            yaw = self._clearance_yaw(point, np.linspace(-np.pi / 2, np.pi / 2, 12, endpoint=False),
                                      pts, spot, mode, approach)
        else:
            approach = down
            # Pads ~2.5 cm below the top: deep enough to pinch, and the hand body (4.5 cm
            # above the grasp point) stays above a tall item's top.
            z = max(top - 0.025, FLOOR_Z + 0.016)
            # A flat item resting tilted on the pile is met square-on (tool along its own
            # "up" axis, at most 25 degrees off vertical), so both pads reach its sides.
            up = rot @ resting_up(spec)
            if spec.geometry == "capsule":  # it may roll about its axis: "up" is the vertical
                axis = rot[:, 2]            # direction perpendicular to that axis
                up = np.array([0.0, 0.0, 1.0]) - axis[2] * axis
                up /= np.linalg.norm(up) + 1e-9
            if spec.geometry not in ("sphere", "pebble"):  # round items have no "up"
                approach = self._tilted_approach(up if up[2] > 0 else -up, max_tilt=np.radians(25))
            point, yaw = self._jaw_grasp(np.array([pos[0], pos[1], z]), pts, approach)
        point = point + self.offset
        clearance = max(point[2] + APPROACH_HEIGHT, self._pile_top(point) + 0.06)
        return GraspPlan(point, R.tool_quaternion(approach, yaw), approach, mode, clearance)

    @staticmethod
    def _tilted_approach(normal: np.ndarray, max_tilt: float) -> np.ndarray:
        """Approach direction against ``normal``, tilted at most ``max_tilt`` from vertical
        (the seal tolerates 30 degrees, so a steeper face is still sealable at the cap)."""
        tilt = np.arccos(np.clip(normal[2], -1, 1))
        horizontal = normal[:2] / (np.linalg.norm(normal[:2]) + 1e-9)
        t = min(tilt, max_tilt)
        return -np.array([horizontal[0] * np.sin(t), horizontal[1] * np.sin(t), np.cos(t)])

    def _neighbour_points(self) -> np.ndarray:
        pts = [np.zeros((0, 3))]
        picked = self.env.target.body if self.pick_body is None else self.pick_body
        for item in self.env.items:
            if item.body != picked:
                pos, orn = p.getBasePositionAndOrientation(item.body, physicsClientId=self.env.client)
                rot = np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
                pts.append(surface_points(item.spec) @ rot.T + np.array(pos))
        return np.concatenate(pts)

    def _pile_top(self, point: np.ndarray, radius: float = 0.14) -> float:
        """Highest neighbour point within ``radius`` of the grasp (the hand must pass over it)."""
        pts = self._neighbour_points()
        near = np.hypot(*(pts[:, :2] - point[:2]).T) < radius
        return float(pts[near, 2].max()) if near.any() else FLOOR_Z

    def _suction_spot(self, body: int, com: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
        """The point (3,) on the target's top straight above (or near) its centre of mass
        that a vertical ray reaches (a neighbour may overhang it), and the normal there."""
        c = self.env.client
        for dx, dy in [(0, 0), (0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01), (0.015, 0.015), (-0.015, -0.015)]:
            x, y = com[0] + dx, com[1] + dy
            # Start just above the target: a ray from higher up would hit the gripper itself.
            hit = p.rayTest([x, y, top + 0.005], [x, y, FLOOR_Z - 0.01], physicsClientId=c)[0]
            if hit[0] == body:
                return np.array(hit[3]), np.array(hit[4])
        return np.array([com[0], com[1], top]), np.array([0.0, 0.0, 1.0])

    def _joint_limit_penalty(self, point: np.ndarray, approach: np.ndarray, yaw: float) -> float:
        """1.0 if reaching the grasp at this yaw brings a joint within 0.15 rad of a limit
        (the arm would be stopped by the joint-limit safety check)."""
        q = R.solve_ik(self.env.client, self.env.robot, point, R.tool_quaternion(approach, yaw))
        margin = np.minimum(q - R.ARM_JOINT_LOWER, R.ARM_JOINT_UPPER - q).min()
        return 1.0 if margin < 0.15 else 0.0

    def _clearance_yaw(self, point: np.ndarray, candidates: np.ndarray, target_pts: np.ndarray,
                       grasp_spot: np.ndarray, mode: str, approach: np.ndarray | None = None) -> float:
        """The candidate yaw whose gripper footprint is least obstructed (see
        :meth:`_clearance_cost`). For suction the target itself counts too: a tilted
        item's high edge under a finger would be hit."""
        pts = self._neighbour_points()
        if mode == "suction":
            keep = np.hypot(*(target_pts[:, :2] - grasp_spot[:2]).T) > 0.02
            pts = np.concatenate([pts, target_pts[keep]])
        approach = np.array([0.0, 0.0, -1.0]) if approach is None else approach
        costs = [self._clearance_cost(point, yaw, pts, approach) for yaw in candidates]
        return float(candidates[int(np.argmin(costs))])

    def _clearance_cost(self, point: np.ndarray, yaw: float, pts: np.ndarray, approach: np.ndarray) -> float:
        """How far (m) obstacles rise into the gripper's path at this grasp (0 = clear).

        Two zones matter on the way down: the **finger pads** (2.5-7.5 cm either side of
        the centre along the closing axis) reach the grasp height, and the **hand body**
        (21 x 8 cm, plus margins) stays ~3 cm above it. A joint-limit problem costs 1 m.
        """
        rel = pts[:, :2] - point[:2]
        fingertip_z = point[2] - 0.008
        # hand frame (tool down): x = (cos, sin), closing axis y = (sin, -cos)
        hx = rel @ np.array([np.cos(yaw), np.sin(yaw)])
        hy = rel @ np.array([np.sin(yaw), -np.cos(yaw)])
        in_fingers = (np.abs(hx) < 0.025) & (np.abs(hy) > 0.025) & (np.abs(hy) < 0.08)
        in_hand = (np.abs(hx) < 0.045) & (np.abs(hy) < 0.115)   # the hand body is 8 x 21 cm
        over = np.r_[pts[in_fingers, 2] - (fingertip_z - 0.003), pts[in_hand, 2] - (point[2] + 0.028), 0.0]
        cost = float(over.max()) + 1e-3 * abs(yaw)  # prefer small wrist turns when equally clear
        return cost + self._joint_limit_penalty(point, approach, yaw)

    def _jaw_grasp(self, centre: np.ndarray, pts: np.ndarray, approach: np.ndarray
                   ) -> tuple[np.ndarray, float]:
        """Best (grasp point, yaw) for the jaw: across the narrow width, and slid along the
        item's length (up to 35 % of its half length) when that keeps the fingers clear."""
        best, best_cost = (centre, 0.0), np.inf
        neighbours = self._neighbour_points()
        for yaw in self._jaw_yaws(pts - centre, approach):
            along = R.quaternion_matrix(R.tool_quaternion(approach, yaw))[:, 0]  # hand x: along the item
            half_length = np.ptp(pts @ along) / 2
            for frac in (0.0, 0.2, -0.2, 0.35, -0.35):
                point = centre + along * frac * max(half_length - 0.015, 0.0)
                cost = self._clearance_cost(point, yaw, neighbours, approach)
                if cost < best_cost - 1e-6:
                    best, best_cost = (point, float(yaw)), cost
        return best

    @staticmethod
    def _jaw_yaws(points: np.ndarray, approach: np.ndarray, tolerance: float = 0.004) -> np.ndarray:
        """Hand yaws whose jaw closes across a width that fits comfortably: the narrowest
        (within ``tolerance``) or anything 12 mm narrower than the usable aperture.

        The closing axis is the tool's y axis (perpendicular to ``approach``). For round
        items many yaws qualify, which leaves room to turn the hand away from neighbours.
        """
        # 1-degree steps: a 14 x 7 cm pouch leaves ~5 mm per finger, so 5 degrees off
        # would land a finger on it.
        yaws = np.linspace(-np.pi / 2, np.pi / 2, 180, endpoint=False)
        closing = np.stack([R.quaternion_matrix(R.tool_quaternion(approach, y))[:, 1] for y in yaws])
        widths = np.ptp(points @ closing.T, axis=0)
        ok = widths <= max(widths.min() + tolerance, JAW_MAX_WIDTH - 0.012)
        good = yaws[ok][np.argsort(widths[ok])]
        return good[:: max(1, len(good) // 24)]

    def _target_pose(self) -> np.ndarray:
        body = self.env.target.body if self.pick_body is None else self.pick_body
        pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=self.env.client)
        return np.r_[pos, orn]

    def _target_moved(self) -> bool:
        """Moved > 1 cm or turned > ~6 degrees since the plan was made."""
        now, then = self._target_pose(), self._planned_pose
        return bool(np.linalg.norm(now[:3] - then[:3]) > 0.01 or abs(np.dot(now[3:], then[3:])) < 0.9986)

    def _plan_approach(self) -> None:
        self.plan = self.grasp_plan()
        self._planned_pose = self._target_pose()
        tcp, quat = self._tcp()
        above = self.plan.point - self.plan.approach * APPROACH_HEIGHT
        above[2] = max(above[2], self.plan.clearance_z)
        duration = max(0.6, np.linalg.norm(above - tcp) / APPROACH_SPEED)
        self.segment = Segment(tcp, above, quat, self.plan.orientation, duration)
        self.phase, self.t = "approach", 0.0

    # ---- acting -----------------------------------------------------------------------
    def act(self, obs=None) -> np.ndarray:
        """Next action (10,) for the current state; ``obs`` is unused (privileged)."""
        if self.plan is None:
            self.reset()
        mode_cmd = "release"
        if self.phase == "approach" and self.t >= self.segment.duration:
            if self._target_moved():
                self.plan = self.grasp_plan()   # re-plan: a neighbour pushed the target
            start = self.segment.end
            end = self.plan.point
            if self.plan.mode == "suction":
                # A guarded move, as a real cell does when it cannot trust the height:
                # stop short by a random margin, then creep until the cup seals. The
                # demonstrations then never show "hover and wait" above an item, only
                # "keep going down until the vacuum gauge says sealed".
                end = self.plan.point - self.plan.approach * self.rng.uniform(*CREEP_HEIGHT)
            duration = max(DESCEND_TIME, np.linalg.norm(end - start) / 0.25)
            self.segment = Segment(start, end, self.segment.q1, self.plan.orientation, duration)
            self.phase, self.t = "descend", 0.0
        if self.phase == "descend":
            remaining = self.segment.duration - self.t
            if self.plan.mode == "suction" and remaining <= 3 * R.CONTROL_DT:
                mode_cmd = "suction"        # pump on just before contact, like a real cell
            if remaining <= 0 and self.plan.mode == "suction":
                # The creep is a guarded move: constant speed, aimed past the planned point,
                # ended by the seal. A move that slowed to a stop *at* the planned point
                # would teach the policy to stop where it believes the surface is, and on a
                # transparent item (no depth) that belief can be centimetres too high.
                start = self.segment.end
                end = self.plan.point + self.plan.approach * CREEP_OVERRUN
                duration = max(R.CONTROL_DT, np.linalg.norm(end - start) / CREEP_SPEED)
                self.segment = Segment(start, end, self.segment.q1, self.segment.q1, duration, constant_speed=True)
                self.phase, self.t = "creep", 0.0
            elif remaining <= 0:
                self.phase, self.dwell = "grasp", 0
        if self.phase == "creep":
            mode_cmd = "suction"
            sealed = self.env.gripper.state.held_body is not None
            self.sealed_steps = self.sealed_steps + 1 if sealed else 0
            # Follow-through: the creep goes on for FOLLOW_THROUGH_STEPS once sealed (the
            # bellows compresses; the seal triggers with the lip up to 1 cm above the
            # surface, so it is still clear of it). Why: a policy executes 4 of its 16
            # predicted steps. Were the arm still right after the seal, a chunk predicted
            # just before an *expected* seal would start with 1-2 creep steps and then
            # stand still, and on a clear item (no depth, so no exact height) the policy
            # would expect the seal at every replan: creeping a step or two per replan, or
            # hovering. With the follow-through, any chunk predicted before the seal
            # starts with >= 3 creep steps, so the arm keeps going down until the gauge
            # says sealed.
            if sealed and (self.sealed_steps > FOLLOW_THROUGH_STEPS or self.t >= self.segment.duration):
                here = self._tcp()[0]   # settle and lift from here, not from the planned point
                self.segment = Segment(here, here, self.segment.q1, self.segment.q1, R.CONTROL_DT)
                self.phase, self.dwell = "grasp", 0
            elif not sealed and self.t >= self.segment.duration:
                self.phase, self.dwell = "grasp", 0   # no seal by the creep's end: wait, then retry
        if self.phase == "grasp":
            mode_cmd = self.plan.mode
            self.dwell += 1
            # Hold still for SETTLE_STEPS once the gauge reports a hold (a real cell waits
            # for the vacuum / grip force to build). Why it matters for imitation: a policy
            # predicts 16 steps but executes only 4. If the lift followed the seal at once,
            # a chunk predicted a step before an *expected* seal would end in "lift", and
            # executing it without the seal makes the arm bob up (measured on transparent
            # items: creep 2-3 steps, rise 1-2, never reaching the surface). With the
            # settle at least as long as the 4 executed steps, any executed lift comes
            # after a seal the policy has observed.
            self.settled = self.settled + 1 if self.env.gripper.state.held_body is not None else 0
            if self.settled > SETTLE_STEPS:
                end = self.segment.end + np.array([0, 0, LIFT_HEIGHT])
                self.segment = Segment(self.segment.end, end, self.segment.q1, self.segment.q1, LIFT_TIME)
                self.phase, self.t = "lift", 0.0
            elif not self.settled and self.dwell > GRASP_DWELL_MAX:
                return self._retry()
        if self.phase == "lift":
            mode_cmd = self.plan.mode
        return np.r_[self._track(), mode_action(mode_cmd)]

    def _retry(self) -> np.ndarray:
        """The grasp did not take: back up, re-plan and try again (bounded)."""
        if self.retries >= MAX_RETRIES:
            self.phase = "give_up"
            return np.r_[np.zeros(R.NUM_ARM_JOINTS), mode_action("release")]
        self.retries += 1
        self._plan_approach()
        return np.r_[self._track(), mode_action("release")]

    def _track(self) -> np.ndarray:
        """Normalised joint velocities (7,) that follow the current segment."""
        if self.phase == "give_up":
            return np.zeros(R.NUM_ARM_JOINTS)
        c, r = self.env.client, self.env.robot
        q, _ = R.arm_state(c, r)
        now_pos, now_quat = self.segment.at(self.t)
        self.t += R.CONTROL_DT
        next_pos, next_quat = self.segment.at(self.t)
        # Integral correction: one damped IK call can leave a few cm of error for tilted
        # tool poses; feeding back where the grasp point actually went removes it.
        if self._last_ref is not None:
            self._ik_bias = np.clip(self._ik_bias + 0.5 * (self._last_ref - self._tcp()[0]), -0.05, 0.05)
        self._last_ref = next_pos
        q_now = R.solve_ik(c, r, now_pos + self._ik_bias, now_quat)
        q_next = R.solve_ik(c, r, next_pos + self._ik_bias, next_quat)
        velocity = (q_next - q_now) / R.CONTROL_DT + FEEDBACK_GAIN * (q_now - q) / R.CONTROL_DT
        return np.clip(velocity / R.ARM_MAX_VELOCITY, -0.95, 0.95)


# ---- single grasp poses (the Section 3.3 baseline's output space) ---------------------
POSE_Z_RANGE = 0.25     # grasp heights 0 .. 0.25 m map to [-1, 1]


def grasp_pose_vector(plan: GraspPlan, width: float) -> np.ndarray:
    """(x, y, z, roll, pitch, yaw, gripper_width) of a grasp, each scaled to [-1, 1]:
    x, y over the bin, z over 0..0.25 m, angles / pi, width over the 0..8 cm aperture.
    Suction grasps use the full aperture (the cup sits between open fingers)."""
    from novapick.sim.world import BIN_CENTER, BIN_HALF

    roll, pitch, yaw = p.getEulerFromQuaternion(plan.orientation.tolist())
    roll = (roll + np.pi) % (2 * np.pi) - np.pi
    # tool pointing down is roll = +-pi: report the deviation from straight down instead
    roll = roll - np.sign(roll) * np.pi if abs(roll) > np.pi / 2 else roll
    w = 2 * R.MAX_FINGER_OPENING if plan.mode == "suction" else width
    return np.array([(plan.point[0] - BIN_CENTER[0]) / BIN_HALF[0], (plan.point[1] - BIN_CENTER[1]) / BIN_HALF[1],
                     2 * plan.point[2] / POSE_Z_RANGE - 1, roll / np.pi, pitch / np.pi, yaw / np.pi,
                     2 * w / (2 * R.MAX_FINGER_OPENING) - 1], dtype=np.float32).clip(-1, 1)


HAND_RELATIVE_SCALE_M = 0.20   # hand-relative offsets are reported in units of 20 cm


def hand_relative_pose(pose: np.ndarray, joint_angles: np.ndarray) -> np.ndarray:
    """The grasp poses (N, 7) of :func:`grasp_pose_vector` seen from the hand at
    ``joint_angles`` (N, 7): (dx, dy, dz, roll, pitch, dyaw, width), where (dx, dy) is
    the offset from the grasp point to the planned one in the hand's heading frame and
    dz the height difference (both / 20 cm), dyaw the wrist turn still to go (wrapped to
    a half turn, / pi); roll, pitch and width are unchanged. Rows of zeros (pose
    unknown) stay zeros.

    Why: this is what the wrist camera shows. The bin-frame pose needs the hand's own
    pose to be read from a wrist image, and a network given the joint angles learns the
    shortcut "the grasp is where the expert's arm is heading" (the planned yaw is the
    wrist angle the expert turns to): on its own rollouts, where the wrist had not
    turned, the policy then read the yaw as 'no turn needed' and kept going."""
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, 7)
    out = np.zeros_like(pose)
    known = np.abs(pose).sum(1) > 0
    if known.any():
        tcp, hand_yaw = R.grasp_target_poses(np.asarray(joint_angles)[known])
        out[known] = pose_seen_from(pose[known], tcp, hand_yaw)
    return out.astype(np.float32)


def pose_seen_from(pose: np.ndarray, tcp: np.ndarray, hand_yaw: np.ndarray) -> np.ndarray:
    """:func:`hand_relative_pose` for known poses (N, 7) and the hand's grasp-target
    positions (N, 3) m and tool yaws (N,) rad (from the simulator, or forward kinematics)."""
    from novapick.sim.world import BIN_CENTER, BIN_HALF

    k = np.asarray(pose, dtype=np.float64).reshape(-1, 7)
    point = np.stack([BIN_CENTER[0] + k[:, 0] * BIN_HALF[0], BIN_CENTER[1] + k[:, 1] * BIN_HALF[1],
                      (k[:, 2] + 1) / 2 * POSE_Z_RANGE], 1)
    d = point - np.asarray(tcp).reshape(-1, 3)
    hand_yaw = np.asarray(hand_yaw, dtype=np.float64).reshape(-1)
    cos, sin = np.cos(hand_yaw), np.sin(hand_yaw)
    dyaw = (k[:, 5] * np.pi - hand_yaw + np.pi / 2) % np.pi - np.pi / 2   # a jaw grasp repeats every half turn
    return np.stack([(cos * d[:, 0] + sin * d[:, 1]) / HAND_RELATIVE_SCALE_M,
                     (-sin * d[:, 0] + cos * d[:, 1]) / HAND_RELATIVE_SCALE_M,
                     d[:, 2] / HAND_RELATIVE_SCALE_M, k[:, 3], k[:, 4], dyaw / np.pi, k[:, 6]], 1).astype(np.float32)


def plan_from_pose_vector(pose: np.ndarray) -> GraspPlan:
    """Inverse of :func:`grasp_pose_vector`: a near-full width means suction."""
    from novapick.sim.world import BIN_CENTER, BIN_HALF

    pose = np.asarray(pose, dtype=float)
    point = np.array([BIN_CENTER[0] + pose[0] * BIN_HALF[0], BIN_CENTER[1] + pose[1] * BIN_HALF[1],
                      (pose[2] + 1) / 2 * POSE_Z_RANGE])
    roll, pitch, yaw = pose[3] * np.pi, pose[4] * np.pi, pose[5] * np.pi
    orientation = np.array(p.getQuaternionFromEuler([np.pi + roll, pitch, yaw]))
    approach = R.quaternion_matrix(orientation)[:, 2]
    mode = "suction" if pose[6] > 0.9 else "parallel_jaw"
    return GraspPlan(point, orientation, approach, mode, point[2] + APPROACH_HEIGHT)


class PoseExpert(ScriptedExpert):
    """Drives the scripted motion (approach, descend, grasp, lift) to a *given* grasp pose
    instead of the privileged one: how a single-pose predictor is executed in the cell."""

    def __init__(self, env, pose: np.ndarray):
        self.fixed_plan = plan_from_pose_vector(pose)
        super().__init__(env)

    def grasp_plan(self) -> GraspPlan:
        return self.fixed_plan

    def _target_moved(self) -> bool:
        return False  # no privileged state: the predicted pose is all it has
