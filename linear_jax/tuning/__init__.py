"""Tuning: many settings trained as one program, regularization paths, and search.

`sweep` and `sweep_state` (K hyperparameter settings as one compiled program,
resumable), `paths` (L-BFGS for K regularization strengths), `search` and
`search_state` (random, local and genetic search, resumable).
"""
