"""Real robot data in the LeRobotDataset format (v2.1 and v3.0) mapped onto our schema.

Both public releases the course uses are LeRobot datasets on the Hugging Face hub:

* **DROID** (Franka Panda, 15 Hz, three RGB cameras, 7 joint positions + gripper),
* **Google Robot / Open X-Embodiment "fractal"** (RT-1 robot, ~3 Hz, one RGB camera,
  end-effector state and actions).

How each mismatch with our schema is handled (also in data_scripts/README.md):

| ours | DROID | fractal | handling |
|---|---|---|---|
| wrist depth (1,H,W) | none in the release | none | depth = 0 everywhere and `depth_valid = False`; losses/metrics that use depth must mask it |
| rgb (3,S,S) wrist | wrist camera | the only (head) camera | centre-cropped to a square, resized to S |
| 20 Hz | 15 Hz | ~3 Hz (info.json `fps`) | resampled to 20 Hz by nearest earlier frame (frames repeat; no interpolation of images) |
| action: 7 normalised joint velocities | joint positions in the state | no joint data (EE deltas) | DROID: finite differences of joint positions x fps / velocity limits, clipped to [-1, 1]; fractal: zeros (the raw EE action is kept in `action_raw`) |
| 3 gripper-mode logits | gripper position 0 (open) .. 1 (closed) | gripper closedness action | closed (> 0.5) -> parallel_jaw, else release; suction never occurs |
| proprio (14,) | 7 joint angles (+ differenced velocities) | none | fractal: zeros |
| reward / grasp | `next.reward` if present | `next.reward` if present | else 1.0 on the last frame of the episode; grasp = gripper closed |

In Colab, ``data_scripts/load_real.py --source droid`` downloads the real subset; here
(no hub), tests run the same code on fixtures written by :func:`write_fixture` in exactly
the same on-disk layout.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from novapick.data.schema import DataFormatError
from novapick.sim.robot import ARM_MAX_VELOCITY, CONTROL_HZ


@dataclass(frozen=True)
class Source:
    repo_id: str             # default hub dataset (override with --repo-id)
    camera: str              # video feature used as our "wrist" image
    joints: bool             # state starts with 7 joint positions
    gripper_state_index: int | None   # index of the gripper in observation.state
    gripper_action_index: int | None  # index of the gripper in action (if not in the state)


SOURCES = {
    "droid": Source("lerobot/droid_100", "observation.images.wrist_image_left", True, 7, None),
    "fractal": Source("IPEC-COMMUNITY/fractal20220817_data_lerobot", "observation.images.image", False, None, -1),
}


# ---- reading ----------------------------------------------------------------------------
@dataclass
class RawEpisode:
    index: int
    task: str
    fps: float
    state: np.ndarray        # (T, S)
    action: np.ndarray       # (T, A)
    frames: np.ndarray       # (T, H, W, 3) uint8
    reward: np.ndarray | None


def read_info(root: Path) -> dict:
    path = root / "meta" / "info.json"
    if not path.exists():
        raise DataFormatError(f"{path} not found: {root} is not a LeRobot dataset root")
    info = json.loads(path.read_text())
    version = info.get("codebase_version", "")
    if version not in ("v2.0", "v2.1", "v3.0"):
        raise DataFormatError(f"{path}: codebase_version {version!r} is not supported (expected v2.1 or v3.0)")
    return info


def decode_video(path: Path, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """RGB frames (T, H, W, 3) uint8 of an mp4 between two timestamps (PyAV)."""
    import av

    if not path.exists():
        raise DataFormatError(f"video {path} is missing")
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else len(frames) / float(stream.average_rate)
            if t + 1e-6 < start_s:
                continue
            if end_s is not None and t >= end_s - 1e-6:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise DataFormatError(f"video {path}: no frames between {start_s:.3f} s and {end_s} s")
    return np.stack(frames)


def _column(table: pa.Table, key: str) -> np.ndarray:
    if key not in table.column_names:
        raise DataFormatError(f"data parquet has no {key!r} column (has {table.column_names})")
    return np.array(table.column(key).to_pylist(), dtype=np.float32)


def iter_episodes(root: str | Path, camera: str, max_episodes: int | None = None):
    """Yield :class:`RawEpisode` from a LeRobot v2.x or v3.0 dataset root."""
    root = Path(root)
    info = read_info(root)
    fps = float(info["fps"])
    if camera not in info.get("features", {}):
        raise DataFormatError(f"{root}: no camera {camera!r}; available: "
                              f"{[k for k, v in info.get('features', {}).items() if v.get('dtype') == 'video']}")
    if info["codebase_version"].startswith("v2"):
        episodes = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines() if line]
        for meta in episodes[:max_episodes]:
            idx = int(meta["episode_index"])
            chunk = idx // int(info.get("chunks_size", 1000))
            table = pq.read_table(root / info["data_path"].format(episode_chunk=chunk, episode_index=idx))
            video = root / info["video_path"].format(episode_chunk=chunk, video_key=camera, episode_index=idx)
            yield _raw(idx, meta["tasks"][0], fps, table, decode_video(video))
    else:
        meta = pq.read_table(sorted((root / "meta" / "episodes").rglob("*.parquet"))[0]).to_pylist()
        for row in meta[:max_episodes]:
            idx = int(row["episode_index"])
            data = pq.read_table(root / info["data_path"].format(chunk_index=row["data/chunk_index"],
                                                                file_index=row["data/file_index"]))
            data = data.filter(pa.compute.equal(data.column("episode_index"), idx))
            video = root / info["video_path"].format(video_key=camera, chunk_index=row[f"videos/{camera}/chunk_index"],
                                                     file_index=row[f"videos/{camera}/file_index"])
            frames = decode_video(video, row[f"videos/{camera}/from_timestamp"], row[f"videos/{camera}/to_timestamp"])
            tasks = row["tasks"]
            yield _raw(idx, tasks[0] if isinstance(tasks, list) else str(tasks), fps, data, frames)


def _raw(idx: int, task: str, fps: float, table: pa.Table, frames: np.ndarray) -> RawEpisode:
    T = table.num_rows
    if len(frames) < T:
        raise DataFormatError(f"episode {idx}, field 'video': {len(frames)} frames for {T} data rows")
    reward = _column(table, "next.reward") if "next.reward" in table.column_names else None
    return RawEpisode(idx, task, fps, _column(table, "observation.state"), _column(table, "action"),
                      frames[:T], reward)


# ---- mapping ----------------------------------------------------------------------------
def _square(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop (T, H, W, 3) to a square and resize to (T, 3, size, size) uint8."""
    import torch
    import torch.nn.functional as F

    T, H, W, _ = frames.shape
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top:top + side, left:left + side])).permute(0, 3, 1, 2)
    x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().numpy()


def map_episode(raw: RawEpisode, source: Source, image_size: int) -> dict[str, np.ndarray]:
    """One raw episode -> our per-frame arrays at 20 Hz (see the module table)."""
    T = len(raw.state)
    if source.joints:
        q = raw.state[:, :7]
        dq = np.gradient(q, axis=0) * raw.fps if T > 1 else np.zeros_like(q)
        proprio = np.concatenate([q, dq], 1)
        joint_action = np.clip(dq / ARM_MAX_VELOCITY, -1, 1)
    else:
        proprio, joint_action = np.zeros((T, 14), np.float32), np.zeros((T, 7), np.float32)
    if source.gripper_state_index is not None:
        closed = raw.state[:, source.gripper_state_index] > 0.5
    else:
        closed = raw.action[:, source.gripper_action_index] > 0.5
    logits = np.where(closed[:, None], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]).astype(np.float32)
    reward = raw.reward if raw.reward is not None else (np.arange(T) == T - 1).astype(np.float32)
    # Resample to our control rate: target step k shows the latest source frame at k / 20 s.
    steps = max(1, int(round(T * CONTROL_HZ / raw.fps)))
    src = np.minimum((np.arange(steps) * raw.fps / CONTROL_HZ).astype(int), T - 1)
    return {
        "rgb": _square(raw.frames, image_size)[src],
        "proprio": proprio[src].astype(np.float32),
        # no vacuum on these robots; jaw aperture: open 8 cm / closed 0 (no width sensor)
        "gripper_state": np.stack([np.zeros(T), np.where(closed, 0.0, 0.08)], 1)[src].astype(np.float32),
        "action": np.concatenate([joint_action, logits], 1)[src].astype(np.float32),
        "action_raw": raw.action[src].astype(np.float32),
        "reward": np.where(np.arange(steps) == steps - 1, reward[-1], 0.0).astype(np.float32)
        if raw.reward is None else reward[src].astype(np.float32),
        "grasp": closed[src].astype(np.float32),
    }


def convert(root: str | Path, source_name: str, out: str | Path, image_size: int = 96,
            max_episodes: int | None = None, progress: bool = True) -> dict:
    """LeRobot dataset at ``root`` -> a NovaPick dataset directory at ``out`` (same layout
    as the synthetic data, plus ``depth_valid`` and ``action_raw`` columns)."""
    from tqdm import tqdm

    from novapick.data.schema import FRAME_FIELDS, SCHEMA
    from novapick.data.writer import write_stats

    source = SOURCES[source_name]
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    tables, episodes, frames = [], 0, 0
    for raw in tqdm(iter_episodes(root, source.camera, max_episodes), desc=f"{source_name} episodes",
                    disable=not progress):
        m = map_episode(raw, source, image_size)
        T = len(m["action"])
        cols = {
            "episode_index": np.full(T, episodes, np.int32), "frame_index": np.arange(T, dtype=np.int32),
            "rgb": [f.tobytes() for f in m["rgb"]],
            "depth": [np.zeros((1, image_size, image_size), np.uint16).tobytes()] * T,
            "proprio": list(m["proprio"]), "gripper_state": list(m["gripper_state"]), "action": list(m["action"]),
            "reward": m["reward"], "grasp": m["grasp"], "done": np.arange(T) == T - 1,
            "instruction": [raw.task.lower()] * T, "object_name": [f"{source_name}_{raw.index}"] * T,
            "split": [source_name] * T, "perturbed": [False] * T, "success": [True] * T, "failure": [""] * T,
            "grasp_pose": [np.zeros(7, np.float32)] * T,  # unknown for real data (baseline not trained on it)
        }
        table = pa.table({k: pa.array(v, type=FRAME_FIELDS[k][0]) for k, v in cols.items()}, schema=SCHEMA)
        table = table.append_column("depth_valid", pa.array(np.zeros(T, bool)))
        table = table.append_column("action_raw", pa.array(list(m["action_raw"]), type=pa.list_(pa.float32())))
        tables.append(table)
        episodes, frames = episodes + 1, frames + T
    if not tables:
        raise DataFormatError(f"{root}: no episodes found")
    pq.write_table(pa.concat_tables(tables), out / "data" / "shard-00000.parquet", compression="zstd")
    info = {"generator_version": f"novapick-lerobot-import-1.0 ({source_name})", "episodes": episodes,
            "frames": frames, "source": source_name, "lerobot_root": str(root),
            "config": {"image_size": image_size, "split": source_name}}
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    write_stats(out)
    return info


# ---- fixtures ---------------------------------------------------------------------------
def _write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=int(round(fps)))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_fixture(root: str | Path, source_name: str, version: str = "v2.1", episodes: int = 2,
                  length: int = 12, height: int = 48, width: int = 64, seed: int = 0) -> Path:
    """A small LeRobot dataset in exactly the hub layout of ``version`` (v2.1 or v3.0)
    with the source's feature names, for offline tests. Frames are smooth colour ramps
    (they survive video compression recognisably); states follow smooth trajectories."""
    source = SOURCES[source_name]
    root = Path(root)
    rng = np.random.default_rng(seed)
    fps = 15.0 if source_name == "droid" else 3.0
    state_dim, action_dim = (8, 8) if source_name == "droid" else (8, 7)
    features = {
        "observation.state": {"dtype": "float32", "shape": [state_dim]},
        "action": {"dtype": "float32", "shape": [action_dim]},
        source.camera: {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"]},
        "timestamp": {"dtype": "float32", "shape": [1]}, "frame_index": {"dtype": "int64", "shape": [1]},
        "episode_index": {"dtype": "int64", "shape": [1]}, "index": {"dtype": "int64", "shape": [1]},
        "task_index": {"dtype": "int64", "shape": [1]},
    }
    tables, videos, ep_rows = [], [], []
    for e in range(episodes):
        t = np.arange(length) / fps
        state = np.zeros((length, state_dim), np.float32)
        state[:, :7] = 0.3 * np.sin(t[:, None] + rng.uniform(0, 3, 7))
        state[:, 7] = (np.arange(length) > length // 2).astype(np.float32)           # gripper closes
        action = np.concatenate([np.diff(state[:, :7], axis=0, append=state[-1:, :7]) * fps,
                                 state[:, 7:8]], 1)[:, :action_dim].astype(np.float32)
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, None, :, None]
        frames = np.broadcast_to(ramp, (length, height, width, 3)).copy()
        frames[..., 1] = (np.arange(length) * 255 / length)[:, None, None]
        frames[..., 2] = 80 * e
        tables.append(pa.table({
            "observation.state": pa.array(list(state), type=pa.list_(pa.float32(), state_dim)),
            "action": pa.array(list(action), type=pa.list_(pa.float32(), action_dim)),
            "timestamp": pa.array(t.astype(np.float32)), "frame_index": pa.array(np.arange(length)),
            "episode_index": pa.array(np.full(length, e)), "index": pa.array(np.arange(length) + e * length),
            "task_index": pa.array(np.zeros(length, np.int64)),
        }))
        videos.append(frames.astype(np.uint8))
        ep_rows.append({"episode_index": e, "tasks": ["put the marker in the bowl"], "length": length})
    info = {"codebase_version": version, "robot_type": source_name, "total_episodes": episodes,
            "total_frames": episodes * length, "total_tasks": 1, "chunks_size": 1000, "fps": fps,
            "splits": {"train": f"0:{episodes}"}, "features": features}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    if version.startswith("v2"):
        info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        info["video_path"] = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        for e, (table, frames) in enumerate(zip(tables, videos)):
            path = root / info["data_path"].format(episode_chunk=0, episode_index=e)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            _write_video(root / info["video_path"].format(episode_chunk=0, video_key=source.camera, episode_index=e),
                         frames, fps)
        (root / "meta" / "episodes.jsonl").write_text("\n".join(json.dumps(r) for r in ep_rows) + "\n")
        (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "put the marker in the bowl"}) + "\n")
    else:
        info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        info["video_path"] = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
        path = root / info["data_path"].format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), path)
        _write_video(root / info["video_path"].format(video_key=source.camera, chunk_index=0, file_index=0),
                     np.concatenate(videos), fps)
        rows = []
        for e, r in enumerate(ep_rows):
            rows.append({**r, "data/chunk_index": 0, "data/file_index": 0,
                         "dataset_from_index": e * length, "dataset_to_index": (e + 1) * length,
                         f"videos/{source.camera}/chunk_index": 0, f"videos/{source.camera}/file_index": 0,
                         f"videos/{source.camera}/from_timestamp": e * length / fps,
                         f"videos/{source.camera}/to_timestamp": (e + 1) * length / fps})
        ep_path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), ep_path)
        pq.write_table(pa.table({"task_index": [0], "task": ["put the marker in the bowl"]}), root / "meta" / "tasks.parquet")
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    return root
