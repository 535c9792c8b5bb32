"""Generating demonstrations in parallel worker processes (used by
``data_scripts/generate_synthetic.py`` and ``make reference``)."""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

from tqdm import tqdm

from novapick.data.schema import GENERATOR_VERSION
from novapick.data.writer import GenerationConfig, remove_stale_tmp, shard_path, write_metadata, write_shard


def _init_worker(image_size: int) -> None:
    import novapick.sim  # noqa: F401 - import PyBullet once per worker process


def _run(args: tuple) -> dict:
    cfg, out, shard = args
    # A fresh simulator per shard: a shard's episodes then always run after the same
    # history, whichever worker picks the shard up. (Reusing one simulator across shards
    # made the content depend on the shard-to-worker assignment: removed and re-created
    # bodies shift Bullet's internal ordering by float rounding.)
    return write_shard(cfg, Path(out), shard, env=None)


def generate(cfg: GenerationConfig, out: str | Path, workers: int = 1, progress: bool = True) -> dict:
    """Generate (or finish) the dataset ``cfg`` describes in ``out`` with ``workers`` processes.

    Shards already on disk are kept as they are (resume); a directory generated with other
    settings is refused. Returns meta/info.json's content plus ``resumed_shards``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "meta" / "generation.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    # the simulator/expert version is part of the settings: shards of an older generator
    # must not be mixed with new ones on resume
    settings = {**vars(cfg), "generator_version": GENERATOR_VERSION}
    # a setting added after a dataset was written takes its default there (the default
    # reproduces what was generated before the setting existed)
    if config_file.exists() and {**vars(GenerationConfig()), **json.loads(config_file.read_text())} != settings:
        raise SystemExit(f"{out} holds a dataset generated with different settings or generator version "
                         f"({config_file.read_text().strip()}); use another --out or delete it")
    config_file.write_text(json.dumps(settings))
    remove_stale_tmp(out)  # a shard is either complete (renamed into place) or regenerated
    todo = [s for s in range(cfg.num_shards) if not shard_path(out, s).exists()]
    done = cfg.num_shards - len(todo)
    start = time.perf_counter()
    summaries = []
    bar = tqdm(total=cfg.episodes, initial=sum(len(cfg.shard_range(s)) for s in range(cfg.num_shards)
                                               if s not in todo), desc="episodes", unit="ep", disable=not progress)
    jobs = [(cfg, str(out), s) for s in todo]
    pool = None
    try:
        if workers <= 1 or len(jobs) <= 1:
            _init_worker(cfg.image_size)
            results = map(_run, jobs)
        else:  # spawn, not fork: PyBullet and torch state must not be inherited
            pool = mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker,
                                                initargs=(cfg.image_size,))
            results = pool.imap_unordered(_run, jobs)
        for summary in results:
            summaries.append(summary)
            bar.update(summary.get("episodes", 0))
    finally:
        if pool is not None:
            pool.terminate()  # finished shards are on disk; an interrupted one is a .tmp file
            pool.join()
        bar.close()
    info = write_metadata(cfg, out, summaries, time.perf_counter() - start)
    info["resumed_shards"] = done
    return info
