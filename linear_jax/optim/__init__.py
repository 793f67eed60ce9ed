"""The pure optimization step and the records of a run.

`config` (`TrainConfig`, every choice of a run, and `StepConfig`, the part
that shapes a compiled program), `step` (hyperparameters as arrays, the optax
optimizer and schedule, the batch plan, the scanned epoch, evaluation),
`convergence` (the stopping tests on the full objective), `gradient_norm`
(`‖∇f‖_∞`, of a gradient and of the full objective), `stop_reasons` (why a
run stopped, and in words) and `results` (`FitResult`, `Diverged`). Nothing
here loops over epochs or touches a file.
"""
