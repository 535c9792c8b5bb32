"""Hidden reference solutions of the NovaPick course (never shipped to students).

Only the answers to the case study's TODOs live here, one module per notebook topic:
augmentation (3.1), eda (3.2), baseline (3.3), encoder / rssm / flow_head (3.4),
training (3.5), evaluation (3.6), error_analysis (3.7), benchmark (3.8). Everything that
*runs* them (model assembly, the training harness, the policy, evaluation workers, the
pipeline) is the student package's, :mod:`novapick`; this package is also a components
module for it (``python -m novapick.pipeline --components solutions``, docs/contract.md).
Instructor notebooks and hidden tests take their code from here.
"""
from solutions.augmentation import augment_observation
from solutions.baseline import GraspBaseline
from solutions.benchmark import benchmark_inference
from solutions.eda import compute_dataset_statistics
from solutions.encoder import ObservationEncoder
from solutions.error_analysis import analyze_failures
from solutions.evaluation import evaluate_model
from solutions.flow_head import FlowMatchingActionHead
from solutions.rssm import RSSM
from solutions.training import train_one_epoch

__all__ = ["augment_observation", "compute_dataset_statistics", "GraspBaseline", "ObservationEncoder", "RSSM",
           "FlowMatchingActionHead", "train_one_epoch", "evaluate_model", "analyze_failures", "benchmark_inference"]
