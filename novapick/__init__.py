"""NovaPick course support package.

Students get this package (never the reference solutions): the simulated
pick-and-place cell (:mod:`novapick.sim`), demonstration data tools
(:mod:`novapick.data`), metrics and plotting/video helpers.
"""

__version__ = "0.1.0"
