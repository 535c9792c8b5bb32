"""Real robot data in the LeRobotDataset format (v2.0/v2.1 and v3.0) mapped onto our schema.

Both public releases the course uses are LeRobot datasets on the Hugging Face hub:

* **DROID** (Franka Panda, like our cell; 15 Hz; wrist + two exterior RGB cameras; joint
  positions, gripper position, commanded joint velocities). Default ``lerobot/droid_100``
  (100 episodes); the full release is ``lerobot/droid_1.0.1``.
* **Google Robot / Open X-Embodiment "fractal"** (RT-1 robot; 3 Hz; one head camera;
  end-effector pose + gripper; end-effector delta actions). Default
  ``IPEC-COMMUNITY/fractal20220817_data_lerobot`` (a community conversion; Google does not
  publish a LeRobot release itself).

Feature names differ between releases (and between conversions of the same data), so a
:class:`Source` lists *candidates* for each quantity and the first one present in the
dataset's ``meta/info.json`` is used; what was used is written to our ``meta/info.json``
(``mapping``), so every import documents itself. Mismatches and how they are handled:

| ours | DROID | fractal | handling |
|---|---|---|---|
| wrist depth (1,H,W) | none in the release | none | depth = 0 everywhere and ``depth_valid = False``: depth terms must be masked |
| wrist RGB (3,S,S) | wrist camera | the only (head) camera | centre-cropped to a square, resized to S (antialiased bilinear) |
| 20 Hz | 15 Hz | 3 Hz (info.json ``fps`` wins) | resampled to 20 Hz: images and commands sample-and-hold (latest earlier frame), joint angles and gripper opening linearly interpolated, sparse rewards moved to the first 20 Hz step at or after them |
| action: 7 normalised joint velocities | ``action.joint_velocity`` (rad/s), else finite differences of joint positions | none (end-effector deltas) | DROID: rad/s / our joint velocity limits (the same Franka limits), clipped to [-1, 1]; fractal: zeros and ``action_valid = False``. The source action is always kept verbatim in ``action_raw`` |
| 3 gripper-mode logits | gripper position 0 open .. 1 closed | action gripper 1 open .. 0 closed (OXE convention); state ``gripper_closed`` 1 = closed | commanded closed -> parallel_jaw, open -> release (one-hot +/-1 like the expert); suction never occurs. The per-source polarity is a :class:`Source` field; the import reports how often the commanded and measured gripper agree (``gripper_agreement``) so an inverted convention is visible |
| proprio (14,): 7 angles + 7 velocities | joint positions; velocities by finite differences | none | fractal: zeros and ``proprio_valid = False`` |
| gripper_state (2,) | gripper position | gripper_closed | suction pressure 0; jaw aperture = (1 - closedness) x 8 cm |
| grasp | gripper closed | gripper closed | an upper bound: a closed jaw may hold nothing |
| reward | ``reward``/``next.reward`` if present | same | else our simulator's shaping: 0.05 per step while grasping + 1.0 on the last step of a successful episode |
| success | ``is_episode_successful`` if present | absent | else True (curated demonstrations) |

In Colab, ``data_scripts/load_real.py --source droid`` downloads the real subset. Here (no
hub), tests run the same code on fixtures written by :mod:`novapick.data.lerobot_fixture`
in exactly the same on-disk layouts.
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from novapick.data.schema import DataFormatError
from novapick.sim.robot import ARM_MAX_VELOCITY, CONTROL_HZ, MAX_FINGER_OPENING

JAW_MAX_APERTURE_M = 2 * MAX_FINGER_OPENING  # 0.08 m: our parallel jaw fully open
REWARD_HOLDING, REWARD_SUCCESS = 0.05, 1.0   # the simulator's reward shaping (novapick.sim.env)
SHARD_EPISODES = 10


# ---- sources ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Where each quantity lives in a LeRobot release of one robot's data.

    A candidate is ``"key"`` (the whole feature), ``"key[pattern]"`` (the dimensions whose
    names in info.json match the glob ``pattern``), ``"key[i]"`` (dimension i) or, for
    cameras, a glob over the video feature names. The first candidate present wins.
    """

    name: str
    repo_id: str
    cameras: tuple[str, ...]
    joints: tuple[str, ...]                 # 7 joint positions (rad)
    joint_velocities: tuple[str, ...]       # 7 commanded joint velocities (rad/s)
    gripper_state: tuple[str, ...]          # measured gripper, one value per frame
    gripper_action: tuple[str, ...]         # commanded gripper, one value per frame
    gripper_state_closed_high: bool         # True: 1 = closed, 0 = open
    gripper_action_closed_high: bool
    reward: tuple[str, ...] = ("next.reward", "reward")
    success: tuple[str, ...] = ("is_episode_successful",)
    language: tuple[str, ...] = ("language_instruction",)  # per-frame text, if the tasks table is empty
    notes: str = ""


SOURCES: dict[str, Source] = {
    "droid": Source(
        name="droid", repo_id="lerobot/droid_100",
        # lerobot's own port calls the wrist camera wrist_left; RLDS-derived ports keep wrist_image_left
        cameras=("observation.images.wrist_left", "observation.images.wrist_image_left", "*wrist*"),
        joints=("observation.state.joint_position", "observation.state.joints", "observation.state[joint*]"),
        joint_velocities=("action.joint_velocity", "action_dict.joint_velocity"),
        gripper_state=("observation.state.gripper_position", "observation.state[gripper*]"),
        gripper_action=("action.gripper_position", "action_dict.gripper_position", "action[gripper*]"),
        gripper_state_closed_high=True, gripper_action_closed_high=True,
        notes="DROID gripper position: 0 = open, 1 = closed (Robotiq 2F-85, 85 mm stroke mapped onto our 80 mm).",
    ),
    "fractal": Source(
        name="fractal", repo_id="IPEC-COMMUNITY/fractal20220817_data_lerobot",
        cameras=("observation.images.image", "*image*"),
        joints=(), joint_velocities=(),
        gripper_state=("observation.state[gripper*]", "observation.state[7]"),
        gripper_action=("action[gripper*]", "action[6]"),
        # RT-1's gripper_closed is 1 when closed; the OXE-standardised action is 1 = open, 0 = close
        gripper_state_closed_high=True, gripper_action_closed_high=False,
        notes="State: end-effector xyz + quaternion + gripper_closed; action: end-effector deltas + gripper (OXE).",
    ),
}


@dataclass(frozen=True)
class Selector:
    """A resolved candidate: feature ``key`` and the dimensions to take (None = all)."""

    spec: str
    key: str
    dims: tuple[int, ...] | None


def feature_names(feature: dict) -> list[str] | None:
    """info.json ``names`` as a flat list (it may be a list or ``{"motors": [...]}``)."""
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


def resolve(features: dict, candidates: tuple[str, ...], video: bool = False) -> Selector | None:
    """The first candidate present in ``features`` (info.json), or None."""
    for spec in candidates:
        if video:
            keys = [k for k, f in features.items() if f.get("dtype") == "video" and fnmatch.fnmatch(k, spec)]
            if keys:
                return Selector(spec, keys[0], None)
            continue
        key, _, pattern = spec.partition("[")
        if key not in features or features[key].get("dtype") in ("video", "image"):
            continue
        if not pattern:
            return Selector(spec, key, None)
        pattern = pattern.rstrip("]")
        if pattern.isdigit():
            dim = int(pattern)
            if dim < int(np.prod(features[key].get("shape", [0]))):
                return Selector(spec, key, (dim,))
            continue
        names = feature_names(features[key]) or []
        dims = tuple(i for i, n in enumerate(names) if fnmatch.fnmatch(n, pattern))
        if dims:
            return Selector(spec, key, dims)
    return None


@dataclass
class Mapping:
    """Which source feature feeds which of our fields (resolved once per dataset)."""

    camera: Selector
    joints: Selector | None
    joint_velocities: Selector | None
    gripper_state: Selector | None
    gripper_action: Selector | None
    reward: Selector | None
    success: Selector | None
    language: Selector | None

    def columns(self) -> list[str]:
        sels = [self.joints, self.joint_velocities, self.gripper_state, self.gripper_action, self.reward,
                self.success, self.language]
        return sorted({s.key for s in sels if s is not None} | {"action", "timestamp", "episode_index"})

    def describe(self) -> dict:
        return {name: (sel.spec if sel else None) for name, sel in vars(self).items()}


def resolve_mapping(info: dict, source: Source, camera: str | None = None) -> Mapping:
    """Resolve every quantity of ``source`` against a dataset's info.json features."""
    features = info.get("features", {})
    cam = resolve(features, (camera,) if camera else source.cameras, video=True)
    if cam is None:
        videos = [k for k, f in features.items() if f.get("dtype") == "video"]
        raise DataFormatError(f"no camera matching {camera or source.cameras} among the video features {videos} "
                              "(pick one with --camera)")
    if "action" not in features:
        raise DataFormatError(f"the dataset has no 'action' feature (features: {sorted(features)})")
    return Mapping(cam, resolve(features, source.joints), resolve(features, source.joint_velocities),
                   resolve(features, source.gripper_state), resolve(features, source.gripper_action),
                   resolve(features, source.reward), resolve(features, source.success),
                   resolve(features, source.language))


# ---- reading the LeRobot layout ------------------------------------------------------------
def read_info(root: Path) -> dict:
    path = Path(root) / "meta" / "info.json"
    if not path.exists():
        raise DataFormatError(f"{path} not found: {root} is not a LeRobot dataset root "
                              "(expected meta/info.json, data/, videos/)")
    info = json.loads(path.read_text())
    version = info.get("codebase_version", "")
    if version not in ("v2.0", "v2.1", "v3.0"):
        raise DataFormatError(f"{path}: codebase_version {version!r} is not supported (expected v2.0, v2.1 or v3.0)")
    for key in ("fps", "data_path", "video_path", "features"):
        if not info.get(key):
            raise DataFormatError(f"{path}: missing {key!r} (a video LeRobot dataset needs it)")
    return info


def _tasks(root: Path) -> dict[int, str]:
    """task_index -> task text (v2: meta/tasks.jsonl; v3: meta/tasks.parquet)."""
    if (root / "meta" / "tasks.jsonl").exists():
        rows = [json.loads(line) for line in (root / "meta" / "tasks.jsonl").read_text().splitlines() if line]
        return {int(r["task_index"]): r["task"] for r in rows}
    path = root / "meta" / "tasks.parquet"
    if path.exists():
        table = pq.read_table(path)
        text_col = "task" if "task" in table.column_names else "__index_level_0__"  # v3 stores it as the index
        return dict(zip(table.column("task_index").to_pylist(), table.column(text_col).to_pylist()))
    return {}


def list_episodes(root: str | Path, max_episodes: int | None = None) -> list[dict]:
    """Episode metadata rows in episode order (v2: meta/episodes.jsonl; v3: meta/episodes/*.parquet)."""
    root = Path(root)
    info = read_info(root)
    if info["codebase_version"].startswith("v2"):
        path = root / "meta" / "episodes.jsonl"
        if not path.exists():
            raise DataFormatError(f"{path} not found (a {info['codebase_version']} dataset lists its episodes there)")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        files = sorted((root / "meta" / "episodes").rglob("*.parquet"))
        if not files:
            raise DataFormatError(f"no meta/episodes/chunk-*/file-*.parquet under {root} (v3.0 episode metadata)")
        rows = []
        for f in files:  # files are in episode order; stop reading once we have enough
            rows += pq.read_table(f).to_pylist()
            if max_episodes is not None and len(rows) >= max_episodes:
                break
    rows.sort(key=lambda r: int(r["episode_index"]))
    return rows[:max_episodes]


def _as_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A scalar or (fixed-size) list column -> (N, D) float32."""
    arr = column.combine_chunks()
    if pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or pa.types.is_large_list(arr.type):
        flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        return flat.reshape(len(arr), -1) if len(arr) else flat.reshape(0, 0)
    return arr.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(arr), 1)


def decode_video(path: Path, start_s: float = 0.0, end_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames (T, H, W, 3) uint8 and their timestamps (T,) s relative to ``start_s``,
    for frames in [start_s, end_s) of an mp4 (PyAV; AV1, H.264, MPEG-4 ...)."""
    import av

    if not path.exists():
        raise DataFormatError(f"video {path} is missing (download it, or check info.json video_path)")
    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if start_s > 0:  # v3 files hold many episodes: jump to the keyframe before this one
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else len(frames) / float(stream.average_rate)
            if t + 1e-4 < start_s:
                continue
            if end_s is not None and t >= end_s - 1e-4:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(t - start_s)
    if not frames:
        raise DataFormatError(f"video {path}: no frames between {start_s:.3f} s and {end_s} s")
    return np.stack(frames), np.asarray(times)


@dataclass
class RawEpisode:
    """One source episode as stored: T rows at the source rate."""

    index: int
    task: str
    fps: float
    columns: dict[str, np.ndarray]     # feature key -> (T, D) float32
    frames: np.ndarray                 # (T, H, W, 3) uint8, frame t shown at row t
    texts: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


class LeRobotReader:
    """Reads episodes of one LeRobot dataset root (v2.x: a file per episode; v3.0: many
    episodes per data/video file, located by meta/episodes)."""

    def __init__(self, root: str | Path, source: Source, camera: str | None = None):
        self.root = Path(root)
        self.info = read_info(self.root)
        self.source = source
        self.fps = float(self.info["fps"])
        self.mapping = resolve_mapping(self.info, source, camera)
        self.tasks = _tasks(self.root)
        self._data_cache: tuple[Path, pa.Table] | None = None  # v3: consecutive episodes share a file

    @property
    def v3(self) -> bool:
        return self.info["codebase_version"] == "v3.0"

    def _data_file(self, path: Path, episode: int) -> pa.Table:
        if not path.exists():
            raise DataFormatError(f"episode {episode}: data file {path} is missing")
        if self._data_cache is None or self._data_cache[0] != path:
            columns = [c for c in self.mapping.columns() + ["task_index"] if c in pq.read_schema(path).names]
            self._data_cache = (path, pq.read_table(path, columns=columns))
        return self._data_cache[1]

    def read(self, meta: dict) -> RawEpisode:
        """Decode one episode given its metadata row from :func:`list_episodes`."""
        idx, cam = int(meta["episode_index"]), self.mapping.camera.key
        if self.v3:
            data = self._data_file(self.root / self.info["data_path"].format(
                chunk_index=meta["data/chunk_index"], file_index=meta["data/file_index"]), idx)
            data = data.filter(pc.equal(data.column("episode_index"), idx))
            video = self.root / self.info["video_path"].format(
                video_key=cam, chunk_index=meta[f"videos/{cam}/chunk_index"],
                file_index=meta[f"videos/{cam}/file_index"])
            frames, times = decode_video(video, float(meta[f"videos/{cam}/from_timestamp"]),
                                         float(meta[f"videos/{cam}/to_timestamp"]))
        else:
            chunk = idx // int(self.info.get("chunks_size", 1000))
            data = self._data_file(self.root / self.info["data_path"].format(episode_chunk=chunk, episode_index=idx),
                                   idx)
            video = self.root / self.info["video_path"].format(episode_chunk=chunk, video_key=cam, episode_index=idx)
            frames, times = decode_video(video)
        if data.num_rows == 0:
            raise DataFormatError(f"episode {idx}: no rows in its data file")
        stamps = (data.column("timestamp").to_numpy(zero_copy_only=False).astype(np.float64)
                  if "timestamp" in data.column_names else np.arange(data.num_rows) / self.fps)
        # the frame shown at each row: the video frame nearest the row's timestamp
        nearest = np.clip(np.searchsorted(times, stamps - 0.5 / self.fps), 0, len(times) - 1)
        if np.abs(times[nearest] - stamps).max() > 1.0 / self.fps:
            raise DataFormatError(f"episode {idx}, field 'video': {video.name} has {len(times)} frames "
                                  f"({times[-1]:.2f} s) for {data.num_rows} data rows ({stamps[-1]:.2f} s)")
        columns = {c: _as_matrix(data.column(c)) for c in data.column_names
                   if c not in ("timestamp", "episode_index", "task_index") and not pa.types.is_string(data.column(c).type)}
        texts = {c: data.column(c)[0].as_py() for c in data.column_names if pa.types.is_string(data.column(c).type)}
        return RawEpisode(idx, self._task(meta, data, texts), self.fps, columns, frames[nearest], texts)

    def _task(self, meta: dict, data: pa.Table, texts: dict[str, str]) -> str:
        tasks = meta.get("tasks")
        if isinstance(tasks, list) and tasks and tasks[0]:
            return str(tasks[0])
        if isinstance(tasks, str) and tasks:
            return tasks
        if "task_index" in data.column_names and self.tasks:
            return self.tasks.get(int(data.column("task_index")[0].as_py()), "")
        lang = self.mapping.language
        return texts.get(lang.key, "") if lang else ""


# ---- mapping onto our schema --------------------------------------------------------------
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


def _select(raw: RawEpisode, sel: Selector | None) -> np.ndarray | None:
    if sel is None:
        return None
    values = raw.columns[sel.key]
    return values if sel.dims is None else values[:, list(sel.dims)]


def _closedness(values: np.ndarray | None, closed_high: bool) -> np.ndarray | None:
    """A gripper signal (T, 1) -> closedness (T,) in [0, 1] (1 = fully closed)."""
    if values is None:
        return None
    v = np.clip(values[:, 0], 0.0, 1.0)
    return v if closed_high else 1.0 - v


def resample_plan(T: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """For each 20 Hz step k (time k / 20 s): the fractional source position k * fps / 20
    (for interpolation) and the latest source row at or before it (for sample-and-hold)."""
    steps = max(1, int(round(T * CONTROL_HZ / fps)))
    position = np.minimum(np.arange(steps) * fps / CONTROL_HZ, T - 1)
    return position, np.floor(position + 1e-9).astype(int)


def _interp(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    rows = np.arange(len(values))
    return np.stack([np.interp(position, rows, values[:, d]) for d in range(values.shape[1])], 1)


def map_episode(raw: RawEpisode, mapping: Mapping, source: Source, image_size: int) -> dict[str, np.ndarray]:
    """One source episode -> our per-frame arrays at 20 Hz plus validity flags (module table)."""
    T = len(raw)
    position, hold = resample_plan(T, raw.fps)
    steps = len(hold)
    joints = _select(raw, mapping.joints)
    if joints is not None and joints.shape[1] != 7:
        raise DataFormatError(f"episode {raw.index}, field {mapping.joints.spec!r}: expected 7 joint positions, "
                              f"got {joints.shape[1]}")
    velocities = _select(raw, mapping.joint_velocities)
    if velocities is not None and velocities.shape[1] != 7:
        raise DataFormatError(f"episode {raw.index}, field {mapping.joint_velocities.spec!r}: expected 7 joint "
                              f"velocities, got {velocities.shape[1]}")
    measured_velocity = (np.gradient(joints, axis=0) * raw.fps if T > 1 else np.zeros_like(joints)) \
        if joints is not None else None
    if velocities is None:
        velocities = measured_velocity  # no commanded velocities: what the joints actually did
    if joints is not None:
        proprio = np.concatenate([_interp(joints, position), measured_velocity[hold]], 1)
    else:
        proprio = np.zeros((steps, 14))
    joint_action = (np.clip(velocities[hold] / ARM_MAX_VELOCITY, -1, 1) if velocities is not None
                    else np.zeros((steps, 7)))

    state_closed = _closedness(_select(raw, mapping.gripper_state), source.gripper_state_closed_high)
    command_closed = _closedness(_select(raw, mapping.gripper_action), source.gripper_action_closed_high)
    if command_closed is None and state_closed is not None:
        command_closed = np.append(state_closed[1:], state_closed[-1:])  # the command is where it went next
    if state_closed is None and command_closed is not None:
        state_closed = np.insert(command_closed[:-1], 0, 0.0)            # ... and the state lags the command
    if state_closed is None:
        state_closed = command_closed = np.zeros(T)
    closed_now = _interp(state_closed[:, None], position)[:, 0]
    command = command_closed[hold] > 0.5
    logits = np.where(command[:, None], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0])
    grasp = (closed_now > 0.5).astype(np.float32)

    success_sel = _select(raw, mapping.success)
    success = bool(success_sel[-1, 0] > 0.5) if success_sel is not None else True
    source_reward = _select(raw, mapping.reward)
    if source_reward is not None:  # sparse: move each reward to the first 20 Hz step at or after it
        reward = np.zeros(steps)
        target = np.minimum(np.ceil(np.arange(T) * CONTROL_HZ / raw.fps - 1e-9).astype(int), steps - 1)
        np.add.at(reward, target, source_reward[:, 0])
    else:
        reward = REWARD_HOLDING * grasp
        reward[-1] += REWARD_SUCCESS if success else 0.0
    return {
        "rgb": _square(raw.frames, image_size)[hold],
        "proprio": proprio.astype(np.float32),
        "gripper_state": np.stack([np.zeros(steps), (1 - closed_now) * JAW_MAX_APERTURE_M], 1).astype(np.float32),
        "action": np.concatenate([joint_action, logits], 1).astype(np.float32),
        "action_raw": raw.columns["action"][hold].astype(np.float32),
        "reward": reward.astype(np.float32),
        "grasp": grasp,
        "success": np.bool_(success),
        "proprio_valid": np.bool_(joints is not None),
        "action_valid": np.bool_(mapping.joint_velocities is not None or joints is not None),
        # how often the measured gripper follows the command one source step later: near 1 for a
        # consistent polarity, near 0 when one of the two conventions is inverted
        "gripper_agreement": np.float32(np.mean((state_closed[1:] > 0.5) == (command_closed[:-1] > 0.5)))
        if T > 1 else np.float32(1.0),
    }


def episode_table(m: dict, raw: RawEpisode, source: Source, episode_index: int, image_size: int) -> pa.Table:
    """Mapped arrays -> an arrow table in our frame schema plus the real-data columns."""
    from novapick.data.schema import FRAME_FIELDS, REAL_DATA_FIELDS, SCHEMA

    T = len(m["action"])
    cols = {
        "episode_index": np.full(T, episode_index, np.int32), "frame_index": np.arange(T, dtype=np.int32),
        "rgb": [f.tobytes() for f in m["rgb"]],
        "depth": [np.zeros((1, image_size, image_size), np.uint16).tobytes()] * T,
        "proprio": list(m["proprio"]), "gripper_state": list(m["gripper_state"]), "action": list(m["action"]),
        "reward": m["reward"], "grasp": m["grasp"], "done": np.arange(T) == T - 1,
        "instruction": [raw.task.strip().lower()] * T, "object_name": [f"{source.name}_{raw.index}"] * T,
        "split": [source.name] * T, "perturbed": [False] * T, "success": [bool(m["success"])] * T,
        "failure": [""] * T,
        "grasp_pose": [np.zeros(7, np.float32)] * T,  # unknown for real data (the baseline trains on synthetic)
        "target_uv": [np.zeros(3, np.float32)] * T,   # unknown: in_view 0, so no grounding loss
    }
    table = pa.table({k: pa.array(v, type=FRAME_FIELDS[k][0]) for k, v in cols.items()}, schema=SCHEMA)
    extra = {"depth_valid": np.zeros(T, bool), "proprio_valid": np.full(T, bool(m["proprio_valid"])),
             "action_valid": np.full(T, bool(m["action_valid"])), "action_raw": list(m["action_raw"])}
    for name, values in extra.items():
        table = table.append_column(name, pa.array(values, type=REAL_DATA_FIELDS[name][0]))
    return table


def convert(root: str | Path, source_name: str, out: str | Path, image_size: int = 96,
            max_episodes: int | None = None, camera: str | None = None, progress: bool = True) -> dict:
    """LeRobot dataset at ``root`` -> a NovaPick dataset directory at ``out`` (the synthetic
    layout plus ``depth_valid``, ``proprio_valid``, ``action_valid`` and ``action_raw``).

    Shards of 10 source episodes are written atomically as they finish; re-running resumes
    and never rewrites a finished shard."""
    from tqdm import tqdm

    from novapick.data.writer import content_hash, read_shard, write_stats

    if source_name not in SOURCES:
        raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source_name!r}")
    source, out = SOURCES[source_name], Path(out)
    reader = LeRobotReader(root, source, camera)
    episodes = list_episodes(root, max_episodes)
    if not episodes:
        raise DataFormatError(f"{root}: no episodes listed in its metadata")
    (out / "data").mkdir(parents=True, exist_ok=True)
    for stale in (out / "data").glob("shard-*.tmp*"):  # left by an interrupted run
        stale.unlink()
    agreement = []
    bar = tqdm(total=len(episodes), desc=f"{source_name} episodes", unit="ep", disable=not progress)
    for shard, start in enumerate(range(0, len(episodes), SHARD_EPISODES)):
        block = episodes[start:start + SHARD_EPISODES]
        path = out / "data" / f"shard-{shard:05d}.parquet"
        if not path.exists():
            tables = []
            for i, meta in enumerate(block):
                raw = reader.read(meta)
                mapped = map_episode(raw, reader.mapping, source, image_size)
                agreement.append(float(mapped["gripper_agreement"]))
                tables.append(episode_table(mapped, raw, source, start + i, image_size))
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            pq.write_table(pa.concat_tables(tables), tmp, compression="zstd")
            os.replace(tmp, path)
        bar.update(len(block))
    bar.close()
    frames = sum(read_shard(p).num_rows for p in sorted((out / "data").glob("shard-*.parquet")))
    info = {"generator_version": f"novapick-lerobot-import-2.0 ({source_name})", "source": source_name,
            "lerobot_root": str(root), "lerobot_version": reader.info["codebase_version"],
            "source_fps": reader.fps, "episodes": len(episodes), "frames": frames,
            "mapping": reader.mapping.describe(), "source_notes": source.notes,
            "gripper_agreement": round(float(np.mean(agreement)), 3) if agreement else None,
            "config": {"image_size": image_size, "split": source_name, "max_episodes": max_episodes},
            "content_hash": content_hash(out)}
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    write_stats(out)
    return info


def files_needed(root: str | Path, source_name: str, max_episodes: int | None, camera: str | None = None
                 ) -> list[str]:
    """Paths (relative to ``root``) of the data and video files the first ``max_episodes``
    episodes need, given only the dataset's meta/ folder: what to download."""
    root = Path(root)
    info = read_info(root)
    cam = resolve_mapping(info, SOURCES[source_name], camera).camera.key
    paths = set()
    for meta in list_episodes(root, max_episodes):
        idx = int(meta["episode_index"])
        if info["codebase_version"] == "v3.0":
            paths.add(info["data_path"].format(chunk_index=meta["data/chunk_index"],
                                               file_index=meta["data/file_index"]))
            paths.add(info["video_path"].format(video_key=cam, chunk_index=meta[f"videos/{cam}/chunk_index"],
                                                file_index=meta[f"videos/{cam}/file_index"]))
        else:
            chunk = idx // int(info.get("chunks_size", 1000))
            paths.add(info["data_path"].format(episode_chunk=chunk, episode_index=idx))
            paths.add(info["video_path"].format(episode_chunk=chunk, video_key=cam, episode_index=idx))
    return sorted(paths)


# ---- downloading a subset from the hub ---------------------------------------------------
META_FILES = ["meta/info.json", "meta/tasks.jsonl", "meta/tasks.parquet", "meta/episodes.jsonl", "README.md"]


def _download_episode_meta(repo_id: str, root: Path, max_episodes: int, revision: str | None) -> None:
    """v3.0 splits meta/episodes into files of many episodes: fetch them in order until
    they list ``max_episodes`` (the full DROID metadata alone is hundreds of MB)."""
    import pyarrow.parquet as pq
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    rows, chunk, index = 0, 0, 0
    while rows < max_episodes:
        name = f"meta/episodes/chunk-{chunk:03d}/file-{index:03d}.parquet"
        try:
            path = hf_hub_download(repo_id, name, repo_type="dataset", local_dir=root, revision=revision)
        except EntryNotFoundError as error:
            if isinstance(error, LocalEntryNotFoundError):  # offline / network: not "no such file"
                raise
            if index == 0:
                return  # no further chunk: the dataset has fewer episodes than asked for
            chunk, index = chunk + 1, 0
            continue
        rows += pq.read_metadata(path).num_rows
        index += 1


def download(repo_id: str, source: str, max_episodes: int, cache: Path, camera: str | None = None,
             revision: str | None = None) -> Path:
    """Fetch a dataset's meta/ files from the hub, then only the data and video files of its
    first ``max_episodes`` episodes (one camera). Returns the local dataset root."""
    import sys

    from huggingface_hub import snapshot_download

    root = Path(cache) / repo_id.replace("/", "__")
    snapshot_download(repo_id, repo_type="dataset", allow_patterns=META_FILES, local_dir=root, revision=revision)
    if read_info(root)["codebase_version"] == "v3.0":
        _download_episode_meta(repo_id, root, max_episodes, revision)
    needed = files_needed(root, source, max_episodes, camera)
    print(f"downloading {len(needed)} data/video files of {repo_id} into {root}", file=sys.stderr)
    snapshot_download(repo_id, repo_type="dataset", allow_patterns=needed, local_dir=root, revision=revision)
    return root
