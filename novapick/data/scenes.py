"""Grounding scenes: thousands of first looks at freshly dropped bins, each with its
instruction and where the named item is in the wrist image.

Why (beyond the case study): a demonstration shows its bin from the home pose once, at
its first frame, and every later frame is a close-up of the same bin. 600
demonstrations are 600 first looks, and that is where the VLA learns to find the named
item among the others before it moves. Measured on the reference checkpoint at b05dd32:
the language attention's centre was more than one patch off the target in 8 % of the
training episodes' first frames but in 16 % (known items) and 20 % (novel) of the
evaluation bins' first frames, and the policy then picked only 50 % / 32 % of those
items against 91 % / 85 % of the others. A scene costs ~12 ms to drop and render (no
expert, no rollout), so 6,000 extra first looks cost about a minute; training adds a
grounding loss on a few of them per step (``TrainConfig.scene_batch``).

    python -m novapick.data.scenes --out data/synthetic_known_64px_s0_jitter0.3_balanced --image-size 64 --shape-jitter 0.3

The file lives in the demonstrations' directory (``scenes/grounding_scenes.npz``), made
with the same split, image size, seed and item resizing; ``novapick.train.harness.train``
uses it when it is there.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from novapick.data.schema import GENERATOR_VERSION, DataFormatError
from novapick.data.writer import validate_bin_settings

SCENES_FILE = Path("scenes") / "grounding_scenes.npz"
FIELDS = ("rgb", "depth", "instruction", "target_uv")
CHUNK_SCENES = 500   # scenes per simulator (the unit of work)


@dataclass
class SceneConfig:
    """Everything that determines the scenes' content (stored in the file)."""

    scenes: int = 6000
    split: str = "known"
    seed: int = 0
    image_size: int = 64
    max_items: int = 5
    shape_jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.scenes < 1:
            raise ValueError(f"scenes must be >= 1, got {self.scenes}")
        validate_bin_settings(self.split, self.image_size, self.max_items, self.shape_jitter)


def scene_plan(cfg: SceneConfig, index: int, objects: list[str]) -> dict:
    """Seed, target and bin size of scene ``index``: a pure function of (cfg, index), so
    the file does not depend on the number of workers. Its own stream (the 5678), apart
    from the demonstrations' and the evaluation's seeds."""
    rng = np.random.default_rng([cfg.seed, index, 5678])
    return {"seed": int(rng.integers(1 << 31)), "object": objects[index % len(objects)],
            "n_items": int(rng.integers(1, cfg.max_items + 1))}


def render_scenes(cfg: SceneConfig, indices: list[int]) -> dict[str, np.ndarray]:
    """Drop and render the scenes ``indices``: rgb (n, 3, S, S) uint8, depth (n, 1, S, S)
    float16 metres, instruction (n,) str, target_uv (n, 3) float32 (u, v, in view)."""
    from novapick.sim import make_env
    from novapick.sim.catalog import load_catalog

    objects = [o.name for o in load_catalog().split(cfg.split)]
    env = make_env(cfg.image_size)
    out: dict[str, list] = {k: [] for k in FIELDS}
    try:
        for i in indices:
            plan = scene_plan(cfg, i, objects)
            obs, _ = env.reset(seed=plan["seed"], options={"object": plan["object"], "split": cfg.split,
                                                           "n_items": plan["n_items"],
                                                           "shape_jitter": cfg.shape_jitter})
            out["rgb"].append(np.round(obs["rgb"] * 255).astype(np.uint8))
            out["depth"].append(obs["depth"].astype(np.float16))
            out["instruction"].append(obs["instruction"])
            out["target_uv"].append(env.unwrapped.target_in_wrist_image().astype(np.float32))
    finally:
        env.close()
    return {k: np.stack(v) if k != "instruction" else np.array(v) for k, v in out.items()}


def _settings(cfg: SceneConfig) -> str:
    return json.dumps({**asdict(cfg), "generator_version": GENERATOR_VERSION}, sort_keys=True)


def generate_scenes(cfg: SceneConfig, dataset_dir: str | Path, workers: int = 1) -> dict:
    """Write ``dataset_dir/scenes/grounding_scenes.npz`` (kept if it already holds these
    settings). Returns {"path", "scenes", "in_view", "bytes", "seconds", "reused"}."""
    path = Path(dataset_dir) / SCENES_FILE
    start = time.perf_counter()
    if path.exists():
        try:
            with np.load(path) as z:
                if str(z["settings"]) == _settings(cfg):
                    return {"path": str(path), "scenes": cfg.scenes, "in_view": float(z["target_uv"][:, 2].mean()),
                            "bytes": path.stat().st_size, "seconds": 0.0, "reused": True}
        except (OSError, KeyError, ValueError):
            pass  # unreadable or from other settings: generate again
    # chunks of CHUNK_SCENES, each on a fresh simulator: a scene then always follows the
    # same history, whichever worker renders it (a reused simulator's float rounding
    # drifts with what it simulated before), so the file does not depend on ``workers``
    chunks = [list(range(i, min(i + CHUNK_SCENES, cfg.scenes))) for i in range(0, cfg.scenes, CHUNK_SCENES)]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(render_scenes, [cfg] * len(chunks), chunks))
    else:
        parts = [render_scenes(cfg, chunk) for chunk in chunks]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, settings=np.array(_settings(cfg)), **arrays)
    tmp.replace(path)                                     # atomic: never a half-written file
    return {"path": str(path), "scenes": cfg.scenes, "in_view": float(arrays["target_uv"][:, 2].mean()),
            "bytes": path.stat().st_size, "seconds": time.perf_counter() - start, "reused": False}


def load_scenes(path: str | Path, image_size: int | None = None) -> dict[str, np.ndarray]:
    """Read a scenes file, checking what training needs; a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no grounding scenes at {path}: make them with python -m novapick.data.scenes")
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in FIELDS}
    except (OSError, KeyError, ValueError) as error:
        raise DataFormatError(f"{path} is not a grounding-scenes file (needs {', '.join(FIELDS)}): {error}") from None
    n, size = len(data["rgb"]), data["rgb"].shape[-1]
    expected = {"rgb": (n, 3, size, size), "depth": (n, 1, size, size), "instruction": (n,), "target_uv": (n, 3)}
    for key, shape in expected.items():
        if data[key].shape != shape:
            raise DataFormatError(f"{path}: {key} has shape {data[key].shape}, expected {shape}")
    if image_size is not None and size != image_size:
        raise DataFormatError(f"{path} holds {size} px scenes; the model needs {image_size} px")
    if not np.isfinite(data["target_uv"]).all():
        raise DataFormatError(f"{path}: target_uv has NaN/inf values")
    return data


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the demonstrations' directory the scenes belong to")
    ap.add_argument("--scenes", type=int, default=SceneConfig.scenes)
    ap.add_argument("--split", choices=["known", "novel"], default="known")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--items", type=int, default=5, help="bins of 1..K items")
    ap.add_argument("--shape-jitter", type=float, default=0.0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        cfg = SceneConfig(args.scenes, args.split, args.seed, args.image_size, args.items, args.shape_jitter)
    except ValueError as error:
        ap.error(str(error))
    info = generate_scenes(cfg, args.out, args.workers)
    print(json.dumps(info))
    return info


if __name__ == "__main__":
    main()
