"""Turning catalog entries into PyBullet bodies: primitives and procedural convex meshes."""
from __future__ import annotations

import numpy as np
import pybullet as p

from novapick.sim.catalog import COLOURS, ObjectSpec, resting_extents


def _lathe(profile: list[tuple[float, float]], segments: int,
           rng: np.random.Generator | None = None, noise: float = 0.0
           ) -> tuple[np.ndarray, list[int]]:
    """Revolve a (radius, z) profile about the z axis into a closed triangle mesh.

    Returns vertices (N, 3) and a flat list of triangle indices. The first and last rings
    are closed with a fan around a centre vertex. ``noise`` jitters each vertex radius
    multiplicatively (procedural pebbles).
    """
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    verts = []
    for r, z in profile:
        scale = 1.0 + (rng.uniform(-noise, noise, segments) if rng is not None and noise else 0.0)
        ring = np.stack([r * scale * np.cos(angles), r * scale * np.sin(angles), np.full(segments, z)], 1)
        verts.append(ring)
    v = np.concatenate(verts)
    idx: list[int] = []
    for k in range(len(profile) - 1):
        a, b = k * segments, (k + 1) * segments
        for i in range(segments):
            j = (i + 1) % segments
            idx += [a + i, a + j, b + j, a + i, b + j, b + i]
    bottom_c, top_c = len(v), len(v) + 1
    v = np.concatenate([v, [[0, 0, profile[0][1]], [0, 0, profile[-1][1]]]])
    last = (len(profile) - 1) * segments
    for i in range(segments):
        j = (i + 1) % segments
        idx += [bottom_c, j, i, top_c, last + i, last + j]
    return v, idx


def mesh_for(spec: ObjectSpec) -> tuple[np.ndarray, list[int]]:
    """Procedural mesh (vertices, indices) for the mesh geometries of the novel split."""
    d = spec.dims
    if spec.geometry == "hexprism":
        return _lathe([(d[0], -d[1] / 2), (d[0], d[1] / 2)], 6)
    if spec.geometry == "frustum":
        return _lathe([(d[0], -d[2] / 2), (d[1], d[2] / 2)], 16)
    if spec.geometry == "pebble":
        rng = np.random.default_rng(spec.mesh_seed)
        lat = np.linspace(-np.pi / 2 + 0.35, np.pi / 2 - 0.35, 5)
        profile = [(d[0] * np.cos(a), d[0] * d[1] * np.sin(a)) for a in lat]
        v, idx = _lathe(profile, 10, rng, noise=0.18)
        return v, idx
    raise ValueError(f"{spec.geometry} is not a mesh geometry")


def resting_orientation(spec: ObjectSpec, yaw: float) -> list[float]:
    """Quaternion of the stable resting pose with the given yaw (capsules lie down)."""
    roll = np.pi / 2 if spec.geometry == "capsule" else 0.0
    return list(p.getQuaternionFromEuler([roll, 0.0, yaw]))


def resting_up(spec: ObjectSpec) -> np.ndarray:
    """The body-frame axis (3,) that points up in the resting pose (capsules lie down)."""
    return np.array([0.0, 1.0, 0.0]) if spec.geometry == "capsule" else np.array([0.0, 0.0, 1.0])


def half_height(spec: ObjectSpec) -> float:
    """Half of the vertical extent in the resting pose (for spawning above the floor)."""
    height = resting_extents(spec.geometry, spec.dims)[2]
    return 0.5 * height * (1.2 if spec.geometry == "pebble" else 1.0)  # pebble noise: +-18 %


def create_body(client: int, spec: ObjectSpec, position, orientation) -> int:
    """Create the rigid body for ``spec`` and set its mass, friction and damping."""
    rgba = list(COLOURS[spec.colour])
    d = spec.dims
    if spec.geometry == "box":
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=d, physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=d, rgbaColor=rgba, physicsClientId=client)
    elif spec.geometry == "cylinder":
        col = p.createCollisionShape(p.GEOM_CYLINDER, radius=d[0], height=d[1], physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_CYLINDER, radius=d[0], length=d[1], rgbaColor=rgba,
                                  physicsClientId=client)
    elif spec.geometry == "sphere":
        col = p.createCollisionShape(p.GEOM_SPHERE, radius=d[0], physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_SPHERE, radius=d[0], rgbaColor=rgba, physicsClientId=client)
    elif spec.geometry == "capsule":
        col = p.createCollisionShape(p.GEOM_CAPSULE, radius=d[0], height=d[1], physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_CAPSULE, radius=d[0], length=d[1], rgbaColor=rgba,
                                  physicsClientId=client)
    else:
        verts, idx = mesh_for(spec)
        col = p.createCollisionShape(p.GEOM_MESH, vertices=verts.tolist(), physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_MESH, vertices=verts.tolist(), indices=idx,
                                  rgbaColor=rgba, physicsClientId=client)
    body = p.createMultiBody(baseMass=spec.mass, baseCollisionShapeIndex=col,
                             baseVisualShapeIndex=vis, basePosition=list(position),
                             baseOrientation=list(orientation), physicsClientId=client)
    soft = spec.material == "deformable"
    p.changeDynamics(body, -1, lateralFriction=spec.friction, spinningFriction=0.002,
                     rollingFriction=0.002 if spec.geometry in ("sphere", "capsule", "pebble") else 0.0005,
                     restitution=0.0 if soft else 0.05,
                     linearDamping=0.4 if soft else 0.04, angularDamping=0.6 if soft else 0.1,
                     physicsClientId=client)
    return body


def surface_points(spec: ObjectSpec) -> np.ndarray:
    """Points (N, 3) covering the object's surface (~1 cm apart) in its body frame: enough
    to measure its extent in any direction and to see what a finger would hit."""
    d = spec.dims
    if spec.geometry == "box":
        g = np.linspace(-1, 1, 7)
        u, v = [a.ravel() for a in np.meshgrid(g, g)]
        faces = []
        for axis in range(3):
            for sign in (-1.0, 1.0):
                pts = np.zeros((len(u), 3))
                pts[:, axis] = sign
                pts[:, (axis + 1) % 3], pts[:, (axis + 2) % 3] = u, v
                faces.append(pts)
        return np.unique(np.concatenate(faces), axis=0) * np.array(d)
    ring = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    circle = np.stack([np.cos(ring), np.sin(ring)], 1)
    if spec.geometry in ("cylinder", "capsule"):
        r, h = d[0], d[1]
        pts = [np.c_[circle * r, np.full(16, z)] for z in np.linspace(-h / 2, h / 2, 5)]
        pts += [np.c_[circle * r * 0.5, np.full(16, z)] for z in (-h / 2, h / 2)]
        if spec.geometry == "capsule":
            pts += [np.c_[circle * r * np.cos(a), np.full(16, s * (h / 2 + r * np.sin(a)))]
                    for a in (0.6, 1.2) for s in (-1, 1)]
            pts.append(np.array([[0, 0, -h / 2 - r], [0, 0, h / 2 + r]]))
        return np.concatenate(pts)
    if spec.geometry == "sphere":
        k = np.arange(80) + 0.5
        phi, theta = np.arccos(1 - 2 * k / 80), np.pi * (1 + 5 ** 0.5) * k
        return d[0] * np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    verts, idx = mesh_for(spec)
    tri = verts[np.array(idx).reshape(-1, 3)]                 # (F, 3, 3)
    extra = [tri.mean(1), (tri[:, 0] + tri[:, 1]) / 2, (tri[:, 1] + tri[:, 2]) / 2]
    return np.concatenate([verts] + extra)
