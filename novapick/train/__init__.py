"""Training: the harness (``python -m novapick.train``), its extras beyond the case study, augmentation."""
