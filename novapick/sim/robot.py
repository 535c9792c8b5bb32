"""The Franka Panda arm of the NovaPick cell: constants, loading and low-level control.

Units: joint angles in rad, joint velocities in rad/s, positions in metres.
The policy never sees raw velocities in rad/s: it emits 7 numbers in [-1, 1]
that are scaled by the per-joint velocity limits (Section 2, output spec).
"""
from __future__ import annotations

import numpy as np
import pybullet as p
import pybullet_data

# ---- Section 2 "Output Specification" -------------------------------------------------
CONTROL_HZ = 20                      # joint-velocity commands per second
CONTROL_DT = 1.0 / CONTROL_HZ        # 0.05 s per control step
PHYSICS_HZ = 240                     # Bullet's default, stable for contacts
SUBSTEPS = PHYSICS_HZ // CONTROL_HZ  # 12 physics steps per control step
NUM_ARM_JOINTS = 7
GRIPPER_MODES = ("suction", "parallel_jaw", "release")
ACTION_DIM = NUM_ARM_JOINTS + len(GRIPPER_MODES)  # 10
CHUNK_SIZE = 16                      # 16 steps = 0.8 s of look-ahead (pi-0 style chunks)
PROPRIO_DIM = 2 * NUM_ARM_JOINTS     # 7 angles + 7 velocities

# ---- Franka Panda limits (the URDF shipped with pybullet_data) ---------------------
ARM_JOINT_LOWER = np.array([-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671])
ARM_JOINT_UPPER = np.array([2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671])
ARM_MAX_VELOCITY = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])  # rad/s
ARM_MAX_TORQUE = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])        # N m

# The home ("ready") pose: tool pointing straight down, grasp point at (0.50, 0, 0.30); the wrist camera ~0.3 m above the bin floor sees about a quarter of the
# bin (a higher "look" pose that sees all of it was tried and not kept).
HOME_JOINTS = np.array([0.0, -0.113, 0.0, -2.271, 0.0, 2.159, np.pi / 4])
# Null-space rest posture for IK (kept separate so that the home pose can change
# without changing the expert's arm configurations near the bin).
IK_REST_JOINTS = np.array([0.0, -0.113, 0.0, -2.271, 0.0, 2.159, np.pi / 4])

ARM_JOINTS = list(range(NUM_ARM_JOINTS))
HAND_LINK = 8            # panda_hand
FINGER_JOINTS = (9, 10)  # prismatic, 0 .. 0.04 m each -> 8 cm maximum aperture
FINGER_LINKS = (9, 10)
GRASP_TARGET_LINK = 11   # between the finger pads, 0.105 m from the hand frame
MAX_FINGER_OPENING = 0.04
FINGER_FORCE = 20.0      # N per finger (the URDF's effort limit)

# The suction cup sits on a short bellows between the fingers. Its lip is 0.118 m from
# the hand frame along the approach axis: 5 mm past the fingertips, so that on a wide
# flat top the cup seals before the fingertips touch.
SUCTION_TIP_OFFSET = 0.118


def load_panda(client: int) -> int:
    """Load the fixed-base Panda at the world origin and return its body id."""
    p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    robot = p.loadURDF("franka_panda/panda.urdf", basePosition=[0, 0, 0], useFixedBase=True,
                       physicsClientId=client)
    for link in FINGER_LINKS:
        # Rubber finger pads: a firm friction grip (a jaw grasp is friction-limited).
        p.changeDynamics(robot, link, lateralFriction=1.0, spinningFriction=0.01,
                         physicsClientId=client)
    return robot


ARM_VISUAL_LINKS = list(range(-1, HAND_LINK))  # base .. link7: never seen by the wrist camera


def arm_colours(client: int, robot: int) -> dict[int, tuple]:
    """Original RGBA of every arm link (to restore them for third-person videos)."""
    return {d[1]: d[7] for d in p.getVisualShapeData(robot, physicsClientId=client)
            if d[1] in ARM_VISUAL_LINKS}


def set_arm_visible(client: int, robot: int, colours: dict[int, tuple], visible: bool) -> None:
    """Show or hide the arm links behind the wrist camera.

    Why: TinyRenderer rasterises every mesh it is given, even those behind the camera;
    the arm's detailed meshes cost ~18 ms of a ~25 ms wrist frame at 96 px although they
    are never in its view. Hiding them (alpha 0) changes no pixel of the wrist image.
    """
    for link, rgba in colours.items():
        colour = list(rgba[:3]) + [rgba[3] if visible else 0.0]
        p.changeVisualShape(robot, link, rgbaColor=colour, physicsClientId=client)


def reset_arm(client: int, robot: int, joints: np.ndarray = HOME_JOINTS) -> None:
    """Teleport the arm to ``joints`` with zero velocity and the fingers open."""
    for j, q in zip(ARM_JOINTS, joints):
        p.resetJointState(robot, j, float(q), 0.0, physicsClientId=client)
    for j in FINGER_JOINTS:
        p.resetJointState(robot, j, MAX_FINGER_OPENING, 0.0, physicsClientId=client)


def arm_state(client: int, robot: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (joint angles (7,) rad, joint velocities (7,) rad/s)."""
    states = p.getJointStates(robot, ARM_JOINTS, physicsClientId=client)
    q = np.array([s[0] for s in states])
    dq = np.array([s[1] for s in states])
    return q, dq


def finger_aperture(client: int, robot: int) -> float:
    """Distance between the two finger pads in metres (0 .. 0.08)."""
    states = p.getJointStates(robot, list(FINGER_JOINTS), physicsClientId=client)
    return float(states[0][0] + states[1][0])


def command_arm_velocity(client: int, robot: int, velocity: np.ndarray, torque_scale: float = 1.0) -> None:
    """Send joint-velocity targets (rad/s) to the 7 arm motors (torque-limited;
    ``torque_scale`` > 1 models the joint brakes of a safety stop)."""
    p.setJointMotorControlArray(robot, ARM_JOINTS, p.VELOCITY_CONTROL,
                                targetVelocities=velocity.tolist(),
                                forces=(ARM_MAX_TORQUE * torque_scale).tolist(), physicsClientId=client)


def command_fingers(client: int, robot: int, close: bool) -> None:
    """Close the jaw with the finger force limit, or open it fully."""
    target = 0.0 if close else MAX_FINGER_OPENING
    p.setJointMotorControlArray(robot, list(FINGER_JOINTS), p.POSITION_CONTROL,
                                targetPositions=[target, target],
                                forces=[FINGER_FORCE, FINGER_FORCE],
                                positionGains=[0.05, 0.05], physicsClientId=client)


def hand_pose(client: int, robot: int) -> tuple[np.ndarray, np.ndarray]:
    """World pose of the hand frame: (position (3,), rotation matrix (3, 3))."""
    state = p.getLinkState(robot, HAND_LINK, computeForwardKinematics=True, physicsClientId=client)
    pos = np.array(state[4])
    rot = np.array(p.getMatrixFromQuaternion(state[5], physicsClientId=client)).reshape(3, 3)
    return pos, rot


def grasp_target_pose(client: int, robot: int) -> tuple[np.ndarray, np.ndarray]:
    """World pose of the grasp target between the finger pads (the IK point):
    (position (3,), tool quaternion (4,))."""
    state = p.getLinkState(robot, GRASP_TARGET_LINK, computeForwardKinematics=True, physicsClientId=client)
    return np.array(state[4]), np.array(state[5])


def grasp_target_poses(joint_angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics for many arm configurations, on a private physics client:
    joint angles (N, 7) rad -> grasp-target positions (N, 3) m and tool yaws (N,) rad
    (the heading of the tool's x axis, the ``yaw`` of :func:`tool_quaternion`)."""
    joint_angles = np.asarray(joint_angles, dtype=float).reshape(-1, NUM_ARM_JOINTS)
    positions, yaws = np.zeros((len(joint_angles), 3)), np.zeros(len(joint_angles))
    client = p.connect(p.DIRECT)
    try:
        robot = load_panda(client)
        for i, q in enumerate(joint_angles):
            for j, angle in zip(ARM_JOINTS, q):
                p.resetJointState(robot, j, float(angle), 0.0, physicsClientId=client)
            positions[i], quaternion = grasp_target_pose(client, robot)
            yaws[i] = tool_yaw(quaternion)
    finally:
        p.disconnect(client)
    return positions, yaws


def suction_tip(client: int, robot: int) -> np.ndarray:
    """World position (3,) of the suction-cup lip; its approach axis is the hand's +z."""
    pos, rot = hand_pose(client, robot)
    return pos + rot[:, 2] * SUCTION_TIP_OFFSET


def tool_yaw(quaternion) -> float:
    """The heading of a tool's x axis in the world's xy plane, rad: the ``yaw`` of
    :func:`tool_quaternion`."""
    m = quaternion_matrix(quaternion)
    return float(np.arctan2(m[1, 0], m[0, 0]))


def tool_quaternion(approach: np.ndarray, yaw: float) -> np.ndarray:
    """Quaternion (x, y, z, w) of a tool whose +z axis points along ``approach`` (unit,
    usually straight down) and whose x axis is world-x turned by ``yaw``, projected."""
    z = approach / np.linalg.norm(approach)
    ref = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    x = ref - (ref @ z) * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.stack([x, y, z], 1)
    # rotation matrix -> quaternion (m is proper and orthonormal)
    w = np.sqrt(max(1e-12, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    if w > 1e-3:
        q = np.array([(m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w),
                      (m[1, 0] - m[0, 1]) / (4 * w), w])
    else:  # 180-degree rotation: fall back to PyBullet's conversion via Euler angles
        q = np.array(p.getQuaternionFromEuler(_euler_from_matrix(m)))
    return q / np.linalg.norm(q)


def quaternion_matrix(q) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (x, y, z, w)."""
    return np.array(p.getMatrixFromQuaternion(list(map(float, q)))).reshape(3, 3)


def _euler_from_matrix(m: np.ndarray) -> list[float]:
    sy = np.hypot(m[0, 0], m[1, 0])
    return [float(np.arctan2(m[2, 1], m[2, 2])), float(np.arctan2(-m[2, 0], sy)),
            float(np.arctan2(m[1, 0], m[0, 0]))]


def solve_ik(client: int, robot: int, tcp_position: np.ndarray, orientation,
             rest: np.ndarray = IK_REST_JOINTS) -> np.ndarray:
    """Joint angles (7,) that put the grasp point at ``tcp_position`` with the tool at
    ``orientation``: a quaternion (4,), or a yaw (float) with the tool pointing down.

    The null-space form keeps the elbow near ``rest`` so that consecutive solutions
    are continuous (no sudden elbow flips -> smooth velocities, low jerk).
    """
    if np.ndim(orientation) == 0:
        orientation = p.getQuaternionFromEuler([np.pi, 0.0, float(orientation)])
    orientation = list(map(float, orientation))
    ranges = (ARM_JOINT_UPPER - ARM_JOINT_LOWER).tolist() + [0.04, 0.04]
    solution = p.calculateInverseKinematics(
        robot, GRASP_TARGET_LINK, tcp_position.tolist(), orientation,
        lowerLimits=ARM_JOINT_LOWER.tolist() + [0.0, 0.0],
        upperLimits=ARM_JOINT_UPPER.tolist() + [0.04, 0.04],
        jointRanges=ranges, restPoses=rest.tolist() + [0.04, 0.04],
        maxNumIterations=60, residualThreshold=1e-5, physicsClientId=client)
    return np.array(solution[:NUM_ARM_JOINTS])
