"""The hybrid gripper: a suction cup on a bellows between the two Panda fingers.

Modes (the last 3 action entries are logits; the argmax is applied):

* ``suction``  — vacuum on, jaw open. The cup seals when its lip is within the capture
  range (1 cm: a compliant bellows cup closes that gap) of a suitable surface: the item
  must be non-porous (not deformable-like), the surface near-normal to the approach
  (within 30 degrees) and the flat patch wide enough for the 30 mm cup. Once sealed, the
  hold force is limited (:data:`SUCTION_HOLD_N`): a heavy item slips off.
* ``parallel_jaw`` — vacuum off, fingers close with 20 N each. The item is held when both
  finger pads press on it from opposite sides; the hold is friction-limited
  (2 x mu x 20 N), and a fragile item is crushed (damage). Wide items do not fit in the
  8 cm aperture: the fingertips land on top instead.
* ``release`` — vacuum off, jaw open: drop whatever is held.

A held item is attached with a fixed constraint (the usual way simulators model a
sealed cup or a firm pinch); whether it *can* be held, and when it slips, follows the
physical rules above, so choosing the right mode is part of the task.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pybullet as p

from novapick.sim import robot as R
from novapick.sim.catalog import (GRAVITY, JAW_GRIP_N, SUCTION_HOLD_N, SUCTION_MIN_FLAT,
                                  ObjectSpec)
from novapick.sim.catalog import _flat_top_width  # same rule as the catalog labels

SUCTION_CAPTURE_M = 0.01            # bellows compliance: seals across a 1 cm gap
SUCTION_MAX_ANGLE_COS = np.cos(np.radians(30))
SUCTION_PRESSURE_OPEN = 0.15        # vacuum gauge with the pump on but no seal (air flows)
SLIP_STEPS = 2                      # consecutive overloaded control steps before it slips


@dataclass
class GripperState:
    mode: str = "release"
    held_body: int | None = None
    constraint: int | None = None
    capacity_n: float = 0.0           # hold force of the current grasp
    overload_steps: int = 0
    slipped_body: int | None = None   # set on the step an item slipped out
    prev_height: float = 0.0
    prev_vz: float = 0.0
    accel_z: float = 0.0
    history: list = field(default_factory=list)


class HybridGripper:
    """Suction + parallel-jaw gripper state machine, updated once per control step."""

    def __init__(self, client: int, robot: int):
        self.client, self.robot = client, robot
        self.state = GripperState()

    # ---- commands ---------------------------------------------------------------------
    def reset(self) -> None:
        if self.state.constraint is not None:
            p.removeConstraint(self.state.constraint, physicsClientId=self.client)
        self.state = GripperState()
        R.command_fingers(self.client, self.robot, close=False)

    def set_mode(self, mode: str) -> None:
        """Apply a mode command. Switching away from the holding mode lets go."""
        if mode not in R.GRIPPER_MODES:
            raise ValueError(f"gripper mode must be one of {R.GRIPPER_MODES}, got {mode!r}")
        if mode != self.state.mode and self.state.held_body is not None:
            self._detach()
        self.state.mode = mode
        R.command_fingers(self.client, self.robot, close=(mode == "parallel_jaw"))

    # ---- observation ------------------------------------------------------------------
    def suction_pressure(self) -> float:
        """Normalised vacuum level: 0 off, 0.15 pumping without a seal, 1 sealed."""
        if self.state.mode != "suction":
            return 0.0
        return 1.0 if self.state.held_body is not None else SUCTION_PRESSURE_OPEN

    # ---- physics ----------------------------------------------------------------------
    def update(self, specs: dict[int, ObjectSpec]) -> None:
        """Try to grasp (seal / pinch), then check the hold; call once per control step."""
        self.state.slipped_body = None
        if self.state.held_body is None:
            if self.state.mode == "suction":
                self._try_seal(specs)
            elif self.state.mode == "parallel_jaw":
                self._try_pinch(specs)
        else:
            self._check_hold(specs[self.state.held_body])

    def _try_seal(self, specs: dict[int, ObjectSpec]) -> None:
        pos, rot = R.hand_pose(self.client, self.robot)
        axis = rot[:, 2]
        start = pos + axis * (R.SUCTION_TIP_OFFSET - 0.02)
        end = pos + axis * (R.SUCTION_TIP_OFFSET + SUCTION_CAPTURE_M)
        hit = p.rayTest(start.tolist(), end.tolist(), physicsClientId=self.client)[0]
        body, normal = hit[0], np.array(hit[4])
        if body not in specs:
            return
        spec = specs[body]
        sealable = (spec.material != "deformable"
                    and _flat_top_width(spec.geometry, spec.dims) >= SUCTION_MIN_FLAT
                    and float(-normal @ axis) >= SUCTION_MAX_ANGLE_COS)
        if sealable:
            self._attach(body, SUCTION_HOLD_N)

    def _try_pinch(self, specs: dict[int, ObjectSpec]) -> None:
        """Held when each finger pad presses on the same item from its own side."""
        _, rot = R.hand_pose(self.client, self.robot)
        closing_axis = rot[:, 1]
        touching: list[set[int]] = []
        for link, sign in zip(R.FINGER_LINKS, (1.0, -1.0)):
            bodies = set()
            for c in p.getContactPoints(bodyA=self.robot, linkIndexA=link, physicsClientId=self.client):
                # normal points from the item (B) to the finger (A): a side push, not a top touch
                if c[2] in specs and abs(float(np.dot(c[7], closing_axis))) > 0.5 and c[9] > 0.5:
                    bodies.add(c[2])
            touching.append(bodies)
        common = touching[0] & touching[1]
        if common and R.finger_aperture(self.client, self.robot) > 0.004:
            body = min(common)
            spec = specs[body]
            self._attach(body, 2 * spec.friction * JAW_GRIP_N)

    def _attach(self, body: int, capacity_n: float) -> None:
        hand_pos, hand_orn = p.getLinkState(self.robot, R.HAND_LINK, physicsClientId=self.client)[4:6]
        obj_pos, obj_orn = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        inv_pos, inv_orn = p.invertTransform(hand_pos, hand_orn)
        rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, obj_pos, obj_orn)
        self.state.constraint = p.createConstraint(
            self.robot, R.HAND_LINK, body, -1, p.JOINT_FIXED, [0, 0, 0], rel_pos, [0, 0, 0],
            parentFrameOrientation=rel_orn, physicsClientId=self.client)
        p.changeConstraint(self.state.constraint, maxForce=200.0, physicsClientId=self.client)
        self.state.held_body, self.state.capacity_n = body, capacity_n
        self.state.overload_steps = 0
        self.state.prev_height = obj_pos[2]
        self.state.prev_vz = 0.0
        self.state.accel_z = 0.0

    def _detach(self) -> None:
        if self.state.constraint is not None:
            p.removeConstraint(self.state.constraint, physicsClientId=self.client)
        self.state.constraint = None
        self.state.held_body = None
        self.state.capacity_n = 0.0

    def _check_hold(self, spec: ObjectSpec) -> None:
        """Slip when the load (weight + lifting acceleration) exceeds the hold force."""
        body = self.state.held_body
        (x, y, z), _ = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        vz = p.getBaseVelocity(body, physicsClientId=self.client)[0][2]
        # Smoothed finite-difference acceleration: a jolt of one control step (an item
        # popping free of a neighbour) is not a sustained load.
        accel_z = 0.5 * self.state.accel_z + 0.5 * (vz - self.state.prev_vz) / R.CONTROL_DT
        self.state.prev_vz, self.state.accel_z = vz, accel_z
        supported = any(c[2] != self.robot for c in
                        p.getContactPoints(bodyA=body, physicsClientId=self.client))
        load = 0.0 if supported else spec.mass * (GRAVITY + max(accel_z, 0.0))
        self.state.overload_steps = self.state.overload_steps + 1 if load > self.state.capacity_n else 0
        if self.state.overload_steps >= SLIP_STEPS:
            self._detach()
            self.state.slipped_body = body
