"""Training: the fit loop over epochs and what it relies on.

`train` (`fit`, `evaluate`), `checkpoint` (crash-safe files), `preemption`
(SIGTERM / SIGINT as a clean stop), `refit` (train again on train +
validation) and `workdir` (one run per workdir).
"""
