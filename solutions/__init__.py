"""Hidden reference solutions of the NovaPick course (never shipped to students).

The single source of truth for every TODO: instructor notebooks and hidden tests take
their code from here. At this stage it holds the reference pipeline driver
(:mod:`solutions.pipeline`); the topic modules (augmentation, eda, baseline, encoder,
rssm, flow_head, training, evaluation, error_analysis, benchmark) arrive with their issues.
"""
