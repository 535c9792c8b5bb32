"""Cameras of the cell: the wrist RGB-D camera (the policy's eyes) and a video camera.

The wrist camera mimics an Intel RealSense D435 colour stream: fx = fy = 615 px at
640x480 (vertical field of view 42.6 degrees). Smaller square images for the quick
profile keep the same field of view (a centre crop of the 4:3 frame, then a resize), so
the geometry a policy learns at 96 px carries over to 224 px.

Depth is metric z-depth in metres with D435-like imperfections: noise that grows with
distance squared, a minimum range, random dropout, and **0 (invalid) on transparent
items**, whose surfaces structured-light/stereo sensors cannot see.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

D435_FX_640x480 = 615.0
D435_MIN_RANGE_M = 0.07
NEAR, FAR = 0.01, 2.0
WRIST_CAMERA_OFFSET = np.array([0.065, 0.0, 0.03])  # in the hand frame: beside the fingers


def vertical_fov_deg(height: int, width: int) -> float:
    """Vertical FOV in degrees: 42.6 at every size, since fy scales with the image height
    (a square image is a centre crop of the 4:3 frame, resized)."""
    fy = D435_FX_640x480 * height / 480.0
    return float(np.degrees(2 * np.arctan(0.5 * height / fy)))


def intrinsics(height: int, width: int) -> np.ndarray:
    """3x3 pinhole matrix K for an image of this size (principal point at the centre)."""
    f = D435_FX_640x480 * height / 480.0
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


@dataclass
class Lighting:
    """Randomised per episode: warehouse lighting varies by site and time of day."""

    direction: tuple[float, float, float] = (0.3, -0.4, 1.0)
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.6
    diffuse: float = 0.45
    specular: float = 0.05

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Lighting":
        az, el = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.4)
        return cls(direction=(float(np.cos(az) * np.cos(el)), float(np.sin(az) * np.cos(el)), float(np.sin(el))),
                   colour=tuple(float(c) for c in rng.uniform(0.8, 1.0, 3)),
                   ambient=float(rng.uniform(0.45, 0.7)), diffuse=float(rng.uniform(0.3, 0.55)),
                   specular=float(rng.uniform(0.0, 0.15)))


def _render(client: int, view: list, height: int, width: int, lighting: Lighting,
            segmentation: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    proj = p.computeProjectionMatrixFOV(vertical_fov_deg(height, width), width / height, NEAR, FAR)
    flags = 0 if segmentation else p.ER_NO_SEGMENTATION_MASK
    _, _, rgba, zbuf, seg = p.getCameraImage(
        width, height, view, proj, renderer=p.ER_TINY_RENDERER, flags=flags, shadow=0,
        lightDirection=list(lighting.direction), lightColor=list(lighting.colour),
        lightAmbientCoeff=lighting.ambient, lightDiffuseCoeff=lighting.diffuse,
        lightSpecularCoeff=lighting.specular, physicsClientId=client)
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3]
    zbuf = np.asarray(zbuf, dtype=np.float32).reshape(height, width)
    depth = FAR * NEAR / (FAR - (FAR - NEAR) * zbuf)  # OpenGL z-buffer -> metric z-depth
    seg_arr = np.asarray(seg).reshape(height, width) if segmentation else None
    return rgb, depth, seg_arr


def wrist_view(hand_pos: np.ndarray, hand_rot: np.ndarray) -> list:
    """View matrix of the wrist camera: it looks along the approach axis (hand +z) with
    the hand's +x as image 'up', so at the home pose image-right is the robot's right."""
    eye = hand_pos + hand_rot @ WRIST_CAMERA_OFFSET
    target = eye + hand_rot[:, 2]
    return p.computeViewMatrix(eye.tolist(), target.tolist(), hand_rot[:, 0].tolist())


def project_to_wrist_image(point: np.ndarray, hand_pos: np.ndarray, hand_rot: np.ndarray) -> np.ndarray:
    """Where a world point (3,) appears in the wrist image: (u, v, in_view) with u, v in
    [-1, 1] from the image's left/top edge to its right/bottom edge (any resolution: the
    field of view is the same), in_view 1.0 if the point is in front of the camera and
    inside the frame. Uses the same view as :func:`wrist_view`."""
    eye = hand_pos + hand_rot @ WRIST_CAMERA_OFFSET
    forward, up = hand_rot[:, 2], hand_rot[:, 0]
    right = np.cross(forward, up)                # the image's +u direction
    rel = np.asarray(point, dtype=float) - eye
    z = float(rel @ forward)
    if z <= 1e-6:
        return np.array([0.0, 0.0, 0.0], np.float32)
    half = np.tan(np.radians(vertical_fov_deg(480, 480)) / 2)   # square images: same FOV both ways
    u, v = float(rel @ right) / (z * half), -float(rel @ up) / (z * half)
    inside = abs(u) <= 1 and abs(v) <= 1
    return np.array([np.clip(u, -1, 1), np.clip(v, -1, 1), float(inside)], np.float32)


def render_wrist(client: int, hand_pos: np.ndarray, hand_rot: np.ndarray, height: int, width: int,
                 lighting: Lighting, rng: np.random.Generator | None,
                 transparent_bodies: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H, W, 3) uint8 and depth (H, W) float32 metres, 0 where invalid."""
    rgb, depth, seg = _render(client, wrist_view(hand_pos, hand_rot), height, width, lighting,
                              segmentation=bool(transparent_bodies))
    depth = depth.astype(np.float32)
    if rng is not None:
        sigma = 0.001 + 0.0025 * depth ** 2                 # D435 RMS error grows ~ z^2
        depth = depth + rng.standard_normal(depth.shape).astype(np.float32) * sigma
        depth[rng.random(depth.shape) < 0.005] = 0.0          # speckle dropout
    invalid = (depth < D435_MIN_RANGE_M) | (depth > FAR * 0.99)
    if seg is not None:
        invalid |= np.isin(seg & ((1 << 24) - 1), list(transparent_bodies))
    depth[invalid] = 0.0
    return rgb, depth


def render_scene(client: int, height: int = 240, width: int = 320,
                 lighting: Lighting | None = None) -> np.ndarray:
    """Third-person RGB frame (H, W, 3) uint8 of the whole cell, for videos."""
    view = p.computeViewMatrix([1.15, -0.55, 0.65], [0.45, 0.0, 0.12], [0, 0, 1])
    rgb, _, _ = _render(client, view, height, width, lighting or Lighting(), segmentation=False)
    return rgb
