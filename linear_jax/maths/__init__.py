"""The lecture's maths: the score function, the losses, their hand-derived gradients and the checker.

`model` (f(x, W) = Wx + b, the bias trick), `losses` (the `Loss` record,
the registry, penalties, the objective), `loss_probe` (a record tried on a
small problem), `loss_files` (a loss from the user's
own file or module), `classification` (multiclass), `binary` and `regression`
(the lecture's per-example losses of the scores and their score gradients),
`more_losses` (losses added through `register_loss`), `grads` (hand-derived gradients, no
autodiff), `custom_vjp` (the objective `jax.grad` differentiates by the hand-derived
rule), `grad_sources` (analytic, autodiff, custom_vjp), `gradcheck`
(finite differences and the three-way report), `numpy_check` (a course-style
NumPy function checked as it is), `jacobians` (the lecture's conventions) and
`validation` (host-side checks of values) with `inputs` (the public
functions' arguments checked against each other). docs/derivations.md derives
each gradient; its index names the function that implements it.
"""
