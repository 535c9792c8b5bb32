"""Demonstration data: synthetic episodes on disk, validation, normalisation, loaders,
and the DROID / Google Robot (LeRobot format) importers.

On disk (one directory, a Hugging Face `datasets` parquet dataset)::

    DIR/README.md                      dataset card (YAML header + description)
    DIR/data/shard-00000.parquet       one row per frame, shards of whole episodes
    DIR/meta/info.json                 features, sizes, seed, generator version, split
    DIR/meta/stats.json                normalisation statistics (training split)

Load it with ``datasets.load_dataset("parquet", data_dir=f"{DIR}/data")`` or, fast and
preprocessed for training, with :func:`novapick.data.dataset.make_dataloader`.
"""
