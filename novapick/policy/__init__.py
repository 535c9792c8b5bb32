"""The policy: model assembly from a components module (:mod:`.model`), the heads and
flow extensions beyond the case study (:mod:`.heads`, :mod:`.flow`) and the closed-loop
:class:`~novapick.policy.vla.VLAPolicy`."""
