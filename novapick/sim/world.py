"""The static cell (floor and bin) and the random bin fill of 1-30 items."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from novapick.sim.catalog import ObjectSpec, resting_extents
from novapick.sim.objects import create_body, half_height, resting_orientation

# Bin interior in the robot base frame (metres). The robot faces +x; +y is its left.
BIN_CENTER = np.array([0.55, 0.0])
BIN_HALF = np.array([0.20, 0.25])      # 0.40 m deep (x) x 0.50 m wide (y), a standard tote
BIN_WALL_HEIGHT = 0.10
BIN_WALL_THICKNESS = 0.01
FLOOR_Z = 0.0                          # the bin floor is the world ground plane
TARGET_MARGIN = 0.11                   # the target lands this far from the walls: the hand is
                                       # 21 cm long, so it fits beside the target at any yaw
TARGET_CLEARANCE = 0.04               # distractors keep this far from the target's edge if they can
MAX_ITEMS = 30


@dataclass
class Item:
    body: int
    spec: ObjectSpec
    is_target: bool = False


def build_cell(client: int) -> int:
    """Create the floor and the bin walls as one static body; returns its id."""
    floor_col = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=client)
    floor_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[1.0, 1.0, 0.001],
                                    rgbaColor=[0.55, 0.55, 0.52, 1], physicsClientId=client)
    cx, cy = BIN_CENTER
    hx, hy, t, h = BIN_HALF[0], BIN_HALF[1], BIN_WALL_THICKNESS, BIN_WALL_HEIGHT
    walls = [([cx + hx + t / 2, cy, h / 2], [t / 2, hy + t, h / 2]),
             ([cx - hx - t / 2, cy, h / 2], [t / 2, hy + t, h / 2]),
             ([cx, cy + hy + t / 2, h / 2], [hx + t, t / 2, h / 2]),
             ([cx, cy - hy - t / 2, h / 2], [hx + t, t / 2, h / 2])]
    cols, viss, poss = [], [], []
    for pos, half in walls:
        cols.append(p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=client))
        viss.append(p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=[0.2, 0.35, 0.6, 1],
                                        physicsClientId=client))
        poss.append(pos)
    bin_floor_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[hx, hy, 0.0005],
                                        rgbaColor=[0.82, 0.80, 0.74, 1], physicsClientId=client)
    body = p.createMultiBody(
        baseMass=0, baseCollisionShapeIndex=floor_col, baseVisualShapeIndex=floor_vis,
        linkMasses=[0] * 5, linkCollisionShapeIndices=cols + [-1],
        linkVisualShapeIndices=viss + [bin_floor_vis],
        linkPositions=poss + [[cx, cy, 0.0006]], linkOrientations=[[0, 0, 0, 1]] * 5,
        linkInertialFramePositions=[[0, 0, 0]] * 5, linkInertialFrameOrientations=[[0, 0, 0, 1]] * 5,
        linkParentIndices=[0] * 5, linkJointTypes=[p.JOINT_FIXED] * 5, linkJointAxis=[[0, 0, 1]] * 5,
        physicsClientId=client)
    p.changeDynamics(body, -1, lateralFriction=0.6, physicsClientId=client)
    return body


def _footprint_radius(spec: ObjectSpec) -> float:
    long_side, short_side, _ = resting_extents(spec.geometry, spec.dims)
    return 0.5 * np.hypot(long_side, short_side)


def pile_height(client: int, xy: np.ndarray, radius: float) -> float:
    """Highest surface (m) under a disc of ``radius`` around ``xy`` (0 = bare floor)."""
    offsets = np.array([[0, 0]] + [[r * np.cos(a), r * np.sin(a)] for r in (radius / 2, radius)
                                   for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)])
    starts = [[x, y, 0.25] for x, y in xy + offsets]  # below the gripper's home height
    ends = [[x, y, FLOOR_Z - 0.01] for x, y in xy + offsets]
    hits = p.rayTestBatch(starts, ends, physicsClientId=client)
    return max(max(h[3][2] for h in hits if h[0] >= 0), FLOOR_Z)


def spawn_items(client: int, rng: np.random.Generator, distractors: list[ObjectSpec],
                target: ObjectSpec) -> list[Item]:
    """Fill the bin: choose the target's spot first (away from the walls), drop the
    distractors at random poses around it, let them settle, then drop the target.

    Distractors keep a few centimetres clear of the target's spot while there is room
    (the gripper's fingers and hand need it); in a crowded bin they may land closer, so
    the target can be partially occluded but is never buried or out of reach.
    Every item starts just above whatever is below it, so nothing starts
    interpenetrating or falls far.
    """
    half = BIN_HALF - TARGET_MARGIN
    target_xy = rng.uniform(BIN_CENTER - half, BIN_CENTER + half)
    keep_out = _footprint_radius(target) + TARGET_CLEARANCE
    items: list[Item] = []
    for spec in distractors:
        radius = _footprint_radius(spec)
        room = np.maximum(BIN_HALF - radius - 0.005, 0.01)
        for _attempt in range(20):
            xy = rng.uniform(BIN_CENTER - room, BIN_CENTER + room)
            if np.linalg.norm(xy - target_xy) > keep_out + radius:
                break
        items.append(_drop(client, rng, spec, xy, pile_height(client, xy, radius)))
    if items:
        settle(client, items)
    items.append(_drop(client, rng, target, target_xy, pile_height(client, target_xy, keep_out),
                       is_target=True))
    return items


def _drop(client: int, rng: np.random.Generator, spec: ObjectSpec, xy: np.ndarray, below: float,
          is_target: bool = False) -> Item:
    z = below + half_height(spec) + 0.005
    orn = resting_orientation(spec, float(rng.uniform(-np.pi, np.pi)))
    return Item(create_body(client, spec, [xy[0], xy[1], z], orn), spec, is_target)


def target_in_reach(client: int, target: Item) -> bool:
    """True if the settled target is still away from the walls (it can slide off a pile)."""
    (x, y, _), _ = p.getBasePositionAndOrientation(target.body, physicsClientId=client)
    lo, hi = BIN_CENTER - BIN_HALF + TARGET_MARGIN - 0.02, BIN_CENTER + BIN_HALF - TARGET_MARGIN + 0.02
    return bool(lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1])


def settle(client: int, items: list[Item], max_steps: int = 360) -> int:
    """Step physics until every item is at rest (or ``max_steps``); returns steps used."""
    for k in range(max_steps):
        p.stepSimulation(physicsClientId=client)
        if k % 12 == 11:
            speeds = [np.linalg.norm(p.getBaseVelocity(it.body, physicsClientId=client)[0]) for it in items]
            if max(speeds) < 0.01:
                return k + 1
    return max_steps
