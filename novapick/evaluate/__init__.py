"""Evaluation in the simulated cell: planned episodes (:mod:`.episodes`), the Section 2
metrics (:mod:`.summary`), parallel workers (:mod:`.workers`, ``python -m
novapick.evaluate``), world-model prediction (:mod:`.world_model`) and the grasp-pose
baseline's training and execution (:mod:`.baseline`)."""
