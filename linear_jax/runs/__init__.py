"""Runs: one library call per command, which writes the command's outputs.

`experiment` (train), `sweep_run` (lr_sweep), `search_run` (search),
`gradcheck_run` (gradcheck), `optimizers_run` (optimizers), `hard_cases`,
`report` (with `report_page` and `landscape`), and `plots`, every picture.
"""
