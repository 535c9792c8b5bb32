"""Load a DROID or Google Robot (Open X-Embodiment "fractal") subset from its public
LeRobot release on the Hugging Face hub and map it onto the NovaPick schema.

    python data_scripts/load_real.py --source droid --max-episodes 100 --out data/droid
    python data_scripts/load_real.py --source fractal --max-episodes 50 --out data/fractal
    python data_scripts/load_real.py --source droid --from-dir /path/to/lerobot/root --out data/droid

Downloads only what the first N episodes need (metadata, their parquet and their
videos). ``--from-dir`` reads an already-downloaded LeRobot root (v2.1 or v3.0) instead;
that is what the tests do with the fixtures the project writes itself, since the hub
cannot be reached on CI. Every schema mismatch and its handling is documented in
``novapick/data/lerobot.py`` and data_scripts/README.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from novapick.data.lerobot import SOURCES, convert  # noqa: E402


def download(repo_id: str, camera: str, max_episodes: int, cache: Path) -> Path:
    """Fetch the metadata, then only the data/video files of the first episodes."""
    from huggingface_hub import snapshot_download

    root = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=["meta/*", "meta/**"],
                                  local_dir=cache / repo_id.replace("/", "__")))
    info = json.loads((root / "meta" / "info.json").read_text())
    if info["codebase_version"].startswith("v2"):
        chunk = info.get("chunks_size", 1000)
        patterns = [info["data_path"].format(episode_chunk=e // chunk, episode_index=e) for e in range(max_episodes)]
        patterns += [info["video_path"].format(episode_chunk=e // chunk, video_key=camera, episode_index=e)
                     for e in range(max_episodes)]
    else:  # v3.0 packs many episodes per file: the first files hold the first episodes
        patterns = ["data/chunk-000/file-000.parquet", f"videos/{camera}/chunk-000/file-000.mp4"]
    snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns, local_dir=root)
    return root


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=sorted(SOURCES), required=True)
    ap.add_argument("--max-episodes", type=int, default=100)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--repo-id", help="override the default hub dataset of the source")
    ap.add_argument("--from-dir", type=Path, help="an already-downloaded LeRobot dataset root")
    ap.add_argument("--cache", type=Path, default=Path("data/hub_cache"))
    args = ap.parse_args(argv)
    source = SOURCES[args.source]
    if args.from_dir:
        root = args.from_dir
    else:
        try:
            root = download(args.repo_id or source.repo_id, source.camera, args.max_episodes, args.cache)
        except Exception as error:  # noqa: BLE001 - explain and stop, never fake data
            raise SystemExit(f"could not download {args.repo_id or source.repo_id} from the Hugging Face hub "
                             f"({type(error).__name__}: {error}). Offline? Use --from-dir with a local copy.")
    info = convert(root, args.source, args.out, args.image_size, args.max_episodes)
    print(json.dumps(info))
    return info


if __name__ == "__main__":
    main()
