"""Small LeRobot datasets in exactly the hub's on-disk layouts, for offline tests.

The hub cannot be reached on CI, so the importer (:mod:`novapick.data.lerobot`) is tested
on fixtures written here: the same ``meta/info.json``, episode metadata, parquet and mp4
files a real release has, with the feature names of each source's release:

* ``droid``: lerobot's port of DROID (``observation.state`` = 7 joints + gripper,
  ``observation.state.joint_position``, ``action.joint_velocity``, ``action.gripper_position``,
  ``observation.images.wrist_left`` + an exterior camera, ``reward``,
  ``is_episode_successful``, ``language_instruction``), 15 Hz, gripper 0 open .. 1 closed.
* ``fractal``: the Open X-Embodiment conversion (``observation.state`` = xyz + quaternion +
  gripper_closed, ``action`` = end-effector deltas + gripper with 1 = open,
  ``observation.images.image``), 3 Hz.

Layouts (``version``):

* v2.0 / v2.1: ``data/chunk-000/episode_000000.parquet``,
  ``videos/chunk-000/<video_key>/episode_000000.mp4``, ``meta/episodes.jsonl``,
  ``meta/tasks.jsonl`` (+ ``meta/episodes_stats.jsonl`` in v2.1).
* v3.0: many episodes per file: ``data/chunk-000/file-000.parquet``,
  ``videos/<video_key>/chunk-000/file-000.mp4``, ``meta/episodes/chunk-000/file-000.parquet``
  (with each episode's rows and ``from``/``to`` timestamps in the video), ``meta/tasks.parquet``.

Videos are AV1 (``libsvtav1``, LeRobot's default) when PyAV's FFmpeg has the encoder,
else MPEG-4. Frames are colour ramps that survive compression: red = a horizontal ramp,
green = 20 x the frame index (time), blue = 80 x the episode index, so tests can check
that the right frames reach the right episode and step.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TASK = "put the marker in the bowl"
FPS = {"droid": 15.0, "fractal": 3.0}


def write_video(path: Path, frames: np.ndarray, fps: float) -> str:
    """Encode (T, H, W, 3) uint8 frames; returns the codec used."""
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner to stderr otherwise
    path.parent.mkdir(parents=True, exist_ok=True)
    for codec in ("libsvtav1", "mpeg4"):
        try:
            with av.open(str(path), mode="w") as container:
                stream = container.add_stream(codec, rate=int(round(fps)))
                stream.height, stream.width = frames.shape[1:3]
                stream.pix_fmt = "yuv420p"
                if codec == "libsvtav1":
                    stream.options = {"preset": "8", "crf": "10"}  # faster presets blur flat test frames
                for f in frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            return "av1" if codec == "libsvtav1" else codec
        except Exception:  # noqa: BLE001 - encoder missing or size unsupported: try the next
            path.unlink(missing_ok=True)
    raise RuntimeError(f"PyAV could not encode {path} with AV1 or MPEG-4")


def _features(source: str, height: int, width: int, fps: float, codec: str) -> dict:
    def vec(n, names=None, dtype="float32"):
        return {"dtype": dtype, "shape": [n], "names": {"axes": names} if names else None}

    video = {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
             "info": {"video.height": height, "video.width": width, "video.codec": codec,
                      "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                      "video.channels": 3, "has_audio": False}}
    joints = [f"joint_{i}" for i in range(7)]
    if source == "droid":
        feats = {
            "observation.state": vec(8, joints + ["gripper"]),
            "observation.state.joint_position": vec(7, joints),
            "observation.state.gripper_position": vec(1, ["gripper"]),
            "observation.state.cartesian_position": vec(6, ["x", "y", "z", "roll", "pitch", "yaw"]),
            "action": vec(8, joints + ["gripper"]),
            "action.joint_velocity": vec(7, joints),
            "action.gripper_position": vec(1, ["gripper"]),
            "action.cartesian_velocity": vec(6, ["x", "y", "z", "roll", "pitch", "yaw"]),
            "observation.images.wrist_left": video,
            "observation.images.exterior_1_left": video,
            "reward": vec(1), "is_episode_successful": vec(1, dtype="bool"),
            "language_instruction": vec(1, dtype="string"),
        }
    else:
        feats = {
            "observation.state": {"dtype": "float32", "shape": [8],
                                  "names": {"motors": ["x", "y", "z", "rx", "ry", "rz", "rw", "gripper"]}},
            "action": {"dtype": "float32", "shape": [7],
                       "names": {"motors": ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]}},
            "observation.images.image": video,
        }
    for name in ("frame_index", "episode_index", "index", "task_index"):
        feats[name] = {"dtype": "int64", "shape": [1], "names": None}
    feats["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    return feats


def _episode(source: str, e: int, length: int, fps: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Smooth trajectories: the gripper is commanded closed halfway and closes one step later."""
    t = np.arange(length) / fps
    phase = rng.uniform(0, 3, 7)
    q = (0.3 * np.sin(t[:, None] + phase) + np.array([0, -0.5, 0, -2.0, 0, 1.8, 0.8])).astype(np.float32)
    dq = (0.3 * np.cos(t[:, None] + phase)).astype(np.float32)
    command_closed = (np.arange(length) >= length // 2 - 1).astype(np.float32)
    state_closed = np.insert(command_closed[:-1], 0, 0.0).astype(np.float32)
    if source == "droid":
        return {"observation.state": np.concatenate([q, state_closed[:, None]], 1),
                "observation.state.joint_position": q,
                "observation.state.gripper_position": state_closed[:, None],
                "observation.state.cartesian_position": rng.normal(size=(length, 6)).astype(np.float32),
                "action": np.concatenate([q, command_closed[:, None]], 1),
                "action.joint_velocity": dq,
                "action.gripper_position": command_closed[:, None],
                "action.cartesian_velocity": rng.normal(size=(length, 6)).astype(np.float32) * 0.1,
                "reward": (np.arange(length) == length - 1).astype(np.float32),
                "is_episode_successful": np.ones(length, bool)}
    pose = np.concatenate([rng.normal(size=(length, 3)) * 0.1, np.tile([0, 0, 0, 1.0], (length, 1))], 1)
    deltas = rng.normal(size=(length, 6)) * 0.01
    return {"observation.state": np.concatenate([pose, state_closed[:, None]], 1).astype(np.float32),
            "action": np.concatenate([deltas, 1.0 - command_closed[:, None]], 1).astype(np.float32)}  # 1 = open


def _frames(e: int, length: int, height: int, width: int) -> np.ndarray:
    frames = np.zeros((length, height, width, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, width, dtype=np.float32)[None, None, :]
    frames[..., 1] = (np.minimum(np.arange(length) * 20, 255))[:, None, None]
    frames[..., 2] = min(80 * e, 255)
    return frames


def _table(source: str, arrays: dict, e: int, length: int, offset: int, fps: float) -> pa.Table:
    cols = {}
    for key, values in arrays.items():
        if values.ndim == 2:
            cols[key] = pa.array(list(values), type=pa.list_(pa.float32(), values.shape[1]))
        else:
            cols[key] = pa.array(values)
    if source == "droid":
        cols["language_instruction"] = pa.array([TASK] * length)
    cols.update({"timestamp": pa.array((np.arange(length) / fps).astype(np.float32)),
                 "frame_index": pa.array(np.arange(length, dtype=np.int64)),
                 "episode_index": pa.array(np.full(length, e, np.int64)),
                 "index": pa.array(np.arange(length, dtype=np.int64) + offset),
                 "task_index": pa.array(np.zeros(length, np.int64))})
    return pa.table(cols)


def write_fixture(root: str | Path, source: str, version: str = "v2.1", episodes: int = 2, length: int = 12,
                  height: int = 64, width: int = 96, episodes_per_file: int = 2, seed: int = 0) -> Path:
    """Write a LeRobot ``version`` (v2.0, v2.1 or v3.0) dataset of ``source`` (droid or
    fractal) at ``root``: ``episodes`` episodes of ``length`` frames at the source's rate.
    ``episodes_per_file`` applies to v3.0 (several files exercise the file indexing)."""
    if source not in FPS:
        raise ValueError(f"source must be one of {sorted(FPS)}, got {source!r}")
    if version not in ("v2.0", "v2.1", "v3.0"):
        raise ValueError(f"version must be v2.0, v2.1 or v3.0, got {version!r}")
    root, fps, rng = Path(root), FPS[source], np.random.default_rng(seed)
    cameras = ["observation.images.wrist_left", "observation.images.exterior_1_left"] if source == "droid" \
        else ["observation.images.image"]
    eps = [(_table(source, _episode(source, e, length, fps, rng), e, length, e * length, fps),
            _frames(e, length, height, width)) for e in range(episodes)]
    info = {"codebase_version": version, "robot_type": "franka" if source == "droid" else "google_robot",
            "total_episodes": episodes, "total_frames": episodes * length, "total_tasks": 1,
            "chunks_size": 1000, "fps": fps, "splits": {"train": f"0:{episodes}"}}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    codec = "av1"
    if version.startswith("v2"):
        info.update({"total_videos": episodes * len(cameras), "total_chunks": 1,
                     "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                     "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"})
        for e, (table, frames) in enumerate(eps):
            path = root / info["data_path"].format(episode_chunk=0, episode_index=e)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            for cam in cameras:
                codec = write_video(root / info["video_path"].format(episode_chunk=0, video_key=cam, episode_index=e),
                                    frames if cam == cameras[0] else 255 - frames, fps)
        rows = [{"episode_index": e, "tasks": [TASK], "length": length} for e in range(episodes)]
        (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": TASK}) + "\n")
        if version == "v2.1":
            stats = [{"episode_index": e, "stats": {"observation.state": _stats(t.column("observation.state"))}}
                     for e, (t, _) in enumerate(eps)]
            (root / "meta" / "episodes_stats.jsonl").write_text("".join(json.dumps(s) + "\n" for s in stats))
    else:
        info.update({"data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
                     "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                     "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"})
        rows = []
        for file_index, first in enumerate(range(0, episodes, episodes_per_file)):
            group = list(range(first, min(first + episodes_per_file, episodes)))
            path = root / info["data_path"].format(chunk_index=0, file_index=file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables([eps[e][0] for e in group]), path)
            for cam in cameras:
                frames = np.concatenate([eps[e][1] if cam == cameras[0] else 255 - eps[e][1] for e in group])
                codec = write_video(root / info["video_path"].format(video_key=cam, chunk_index=0,
                                                                     file_index=file_index), frames, fps)
            for j, e in enumerate(group):
                row = {"episode_index": e, "tasks": [TASK], "length": length,
                       "data/chunk_index": 0, "data/file_index": file_index,
                       "dataset_from_index": e * length, "dataset_to_index": (e + 1) * length,
                       "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
                for cam in cameras:
                    row.update({f"videos/{cam}/chunk_index": 0, f"videos/{cam}/file_index": file_index,
                                f"videos/{cam}/from_timestamp": j * length / fps,
                                f"videos/{cam}/to_timestamp": (j + 1) * length / fps})
                rows.append(row)
        ep_path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), ep_path)
        pq.write_table(pa.table({"task_index": [0], "task": [TASK]}), root / "meta" / "tasks.parquet")
        all_states = pa.chunked_array([t.column("observation.state").combine_chunks() for t, _ in eps])
        (root / "meta" / "stats.json").write_text(json.dumps({"observation.state": _stats(all_states)}))
    info["features"] = _features(source, height, width, fps, codec)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return root


def _stats(column) -> dict:
    values = np.array(column.to_pylist(), np.float32)
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [len(values)]}
