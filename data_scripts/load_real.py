"""Load a DROID or Google Robot (Open X-Embodiment "fractal") subset from its public
LeRobot release on the Hugging Face hub and map it onto the NovaPick schema.

    python data_scripts/load_real.py --source droid --max-episodes 100 --out data/droid_96px
    python data_scripts/load_real.py --source fractal --max-episodes 50 --out data/fractal_96px
    python data_scripts/load_real.py --source droid --from-dir /path/to/lerobot/root --out data/droid_96px

Downloads only what the first N episodes need: the meta/ files, then exactly the data
and video files (of the one camera used) that hold those episodes (v2.x: one file per
episode; v3.0: the shared files named by meta/episodes). ``--from-dir`` reads an
already-downloaded LeRobot root (v2.0, v2.1 or v3.0) instead; that is what the tests do
with the fixtures the project writes itself, since the hub cannot be reached on CI.
Every schema mismatch and its handling is documented in ``novapick/data/lerobot.py`` and
``data_scripts/README.md``; the mapping actually used lands in ``OUT/meta/info.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from novapick.data.lerobot import SOURCES, convert, download  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=sorted(SOURCES), required=True)
    ap.add_argument("--max-episodes", type=int, default=100)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--repo-id", help="override the default hub dataset of the source")
    ap.add_argument("--revision", help="a hub revision (branch, tag or commit) to pin")
    ap.add_argument("--camera", help="video feature to use as the wrist image (default: the source's first match)")
    ap.add_argument("--from-dir", type=Path, help="an already-downloaded LeRobot dataset root")
    ap.add_argument("--cache", type=Path, default=Path("data/hub_cache"))
    args = ap.parse_args(argv)
    if args.max_episodes < 1:
        ap.error(f"--max-episodes must be >= 1, got {args.max_episodes}")
    repo_id = args.repo_id or SOURCES[args.source].repo_id
    if args.from_dir:
        root = args.from_dir
    else:
        try:
            root = download(repo_id, args.source, args.max_episodes, args.cache, args.camera, args.revision)
        except Exception as error:  # noqa: BLE001 - explain and stop, never fake data
            raise SystemExit(f"could not download {repo_id} from the Hugging Face hub ({type(error).__name__}: "
                             f"{error}). Offline? Use --from-dir with a local copy of the dataset.") from error
    info = convert(root, args.source, args.out, args.image_size, args.max_episodes, camera=args.camera)
    if info["episodes"] < args.max_episodes:
        print(f"note: {root} holds only {info['episodes']} episodes (asked for {args.max_episodes})", file=sys.stderr)
    print(json.dumps({k: info[k] for k in ("source", "episodes", "frames", "mapping", "gripper_agreement",
                                           "content_hash")}))
    return info


if __name__ == "__main__":
    main()
