"""Demonstration data: synthetic episodes on disk, validation, normalisation, loaders,
and the DROID / Google Robot (LeRobot format) importers.

On disk (one directory, a Hugging Face `datasets` parquet dataset)::

    DIR/README.md                      dataset card (YAML header + description)
    DIR/data/shard-00000.parquet       one row per 20 Hz frame, shards of whole episodes
    DIR/meta/info.json                 features, sizes, seed, generator version, split, content hash
    DIR/meta/stats.json                normalisation statistics (training split)
    DIR/meta/generation.json           the generation settings (synthetic; resume refuses others)

Modules: ``schema`` (the frame schema), ``writer`` / ``generate`` (resumable shards,
dataset card, content hash), ``check`` (``python -m novapick.data.check DIR``),
``normalize``, ``dataset`` (frame and window loaders), ``lerobot`` (DROID / fractal
import) with ``lerobot_fixture`` (offline fixtures in the hub's layouts), ``mix`` (the
curated data mix per profile).

Load it with ``datasets.load_dataset("parquet", data_dir=f"{DIR}/data")`` or, fast and
preprocessed for training, with :func:`novapick.data.dataset.make_dataloader`.
"""
