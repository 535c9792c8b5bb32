"""The frame schema shared by the generator, the checker and the loaders.

One row per control step (LeRobot style: ``episode_index`` + ``frame_index``), so that
sequence windows and action chunks are cheap slices. Images are stored raw (no lossy
compression; parquet's zstd compresses rendered images well):

* ``rgb``   uint8 bytes, (3, H, W) row-major
* ``depth`` uint16 bytes, (1, H, W) **millimetres**; 0 = invalid (transparent, too close)
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

GENERATOR_VERSION = "novapick-synthetic-1.5"  # bump when the simulator or expert changes what is generated
DEPTH_SCALE_M = 0.001            # uint16 depth unit: 1 mm
DEPTH_MAX_M = 2.0                # normalised depth = depth_m / DEPTH_MAX_M, clipped to [0, 1]
CHUNK_SIZE = 16
ACTION_DIM = 10
PROPRIO_DIM = 14
FAILURES = ("grasp_slip", "miss", "wrong_object", "collision", "timeout")

# name -> (arrow type, per-frame shape for vectors, description)
FRAME_FIELDS: dict[str, tuple[pa.DataType, tuple, str]] = {
    "episode_index": (pa.int32(), (), "episode id, 0..N-1"),
    "frame_index": (pa.int32(), (), "step within the episode, 0..T-1"),
    "rgb": (pa.binary(), (3, "H", "W"), "wrist RGB, uint8, (3, H, W)"),
    "depth": (pa.binary(), (1, "H", "W"), "wrist depth, uint16 millimetres, (1, H, W); 0 = invalid"),
    "proprio": (pa.list_(pa.float32(), 14), (14,), "7 joint angles (rad) + 7 joint velocities (rad/s)"),
    "gripper_state": (pa.list_(pa.float32(), 2), (2,), "suction pressure [0, 1] + jaw aperture (m)"),
    "action": (pa.list_(pa.float32(), 10), (10,), "7 normalised joint velocities + 3 mode logits"),
    "reward": (pa.float32(), (), "per-step reward"),
    "grasp": (pa.float32(), (), "1.0 if the target is held after this step"),
    "done": (pa.bool_(), (), "True on the episode's last step"),
    "instruction": (pa.string(), (), "language instruction"),
    "object_name": (pa.string(), (), "target object"),
    "split": (pa.string(), (), "known | novel"),
    "perturbed": (pa.bool_(), (), "executed with injected noise (labels are clean)"),
    "success": (pa.bool_(), (), "episode outcome"),
    "failure": (pa.string(), (), "failure category or ''"),
    "grasp_pose": (pa.list_(pa.float32(), 7), (7,), "the expert's planned grasp at the start (x, y, z, roll, "
                   "pitch, yaw, width), each in [-1, 1]: the Section 3.3 baseline's target"),
    "target_uv": (pa.list_(pa.float32(), 3), (3,), "where the target's centre is in this frame's wrist image: "
                  "(u, v) in [-1, 1] (left/top to right/bottom) and in_view 1/0; all 0 where unknown"),
}
SCHEMA = pa.schema([(name, spec[0]) for name, spec in FRAME_FIELDS.items()])

# Extra columns of imported real data (novapick.data.lerobot); absent = True / not applicable.
REAL_DATA_FIELDS: dict[str, tuple[pa.DataType, str]] = {
    "depth_valid": (pa.bool_(), "False: the source has no depth (depth is all 0): mask depth terms"),
    "proprio_valid": (pa.bool_(), "False: the source has no joint angles (proprio is all 0)"),
    "action_valid": (pa.bool_(), "False: no joint-velocity actions (the 7 velocities are 0): mask them"),
    "action_raw": (pa.list_(pa.float32()), "the source's own action vector, verbatim (e.g. end-effector deltas)"),
}


class DataFormatError(ValueError):
    """A dataset that does not match the schema; the message names the episode and field."""


def episode_to_table(episode, episode_index: int) -> pa.Table:
    """A recorded :class:`novapick.sim.rollout.Episode` -> an arrow table of T rows."""
    T = len(episode)
    depth_mm = np.clip(np.round(episode.depth / DEPTH_SCALE_M), 0, 65535).astype(np.uint16)
    meta = episode.meta
    columns = {
        "episode_index": np.full(T, episode_index, np.int32),
        "frame_index": np.arange(T, dtype=np.int32),
        "rgb": [frame.tobytes() for frame in np.ascontiguousarray(episode.rgb)],
        "depth": [frame.tobytes() for frame in depth_mm],
        "proprio": list(episode.proprio.astype(np.float32)),
        "gripper_state": list(episode.gripper_state.astype(np.float32)),
        "action": list(episode.action.astype(np.float32)),
        "reward": episode.reward.astype(np.float32),
        "grasp": episode.grasp.astype(np.float32),
        "done": np.arange(T) == T - 1,
        "instruction": [episode.instruction] * T,
        "object_name": [meta["object_name"]] * T,
        "split": [meta["split"]] * T,
        "perturbed": [bool(meta["perturbed"])] * T,
        "success": [bool(meta["success"])] * T,
        "failure": [meta["failure"] or ""] * T,
        "grasp_pose": [np.asarray(meta["grasp_pose"], np.float32)] * T,
        "target_uv": list(episode.target_uv.astype(np.float32)) if episode.target_uv is not None
        else [np.zeros(3, np.float32)] * T,
    }
    return pa.table({k: pa.array(v, type=FRAME_FIELDS[k][0]) for k, v in columns.items()}, schema=SCHEMA)


def fixed_binary(table: pa.Table, field: str, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A fixed-size binary column -> (N, *shape) array without a Python-level copy per row.
    Raises DataFormatError (naming the episode) if a row has the wrong byte length."""
    arr = table.column(field).combine_chunks()
    if arr.null_count:
        bad = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataFormatError(f"episode {_episode_of(table, bad)}, field {field!r}: missing value at frame row {bad}")
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset: arr.offset + len(arr) + 1]
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    lengths = np.diff(offsets)
    if len(lengths) and (lengths != size).any():
        bad = int(np.flatnonzero(lengths != size)[0])
        raise DataFormatError(f"episode {_episode_of(table, bad)}, field {field!r}: expected {size} bytes "
                              f"({np.dtype(dtype).name} {shape}), got {int(lengths[bad])}")
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0]:offsets[-1]] if len(arr) else np.zeros(0, np.uint8)
    return data.view(dtype).reshape(len(arr), *shape)


def vector_column(table: pa.Table, field: str, dim: int) -> np.ndarray:
    """A fixed-size list<float32> column -> (N, dim) float32."""
    arr = table.column(field).combine_chunks()
    if arr.null_count:
        bad = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataFormatError(f"episode {_episode_of(table, bad)}, field {field!r}: missing value at frame row {bad}")
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(arr), dim)


def _episode_of(table: pa.Table, row: int) -> int:
    return int(table.column("episode_index")[row].as_py())


def decode_images(table: pa.Table, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """rgb (N, 3, H, W) uint8 and depth (N, 1, H, W) uint16 millimetres from a frame table."""
    return (fixed_binary(table, "rgb", np.uint8, (3, height, width)),
            fixed_binary(table, "depth", np.uint16, (1, height, width)))
