"""Every gradient check of a loss × penalty × form × method grid as one call.

The library half of `experiments/gradcheck.py` (which keeps the flags, the
float64 switch, the printing, the JSON report and the exit status): `check_all`
runs `gradcheck.check_gradients` over the grid.
"""

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

import jax

from linear_jax.data import memory
from linear_jax.maths import custom_vjp
from linear_jax.maths import gradcheck
from linear_jax.maths import losses

FORMS = {'no': (False,), 'yes': (True,), 'both': (False, True)}  # bias-trick forms checked


def grad_under_test(grad='analytic', plant='none'):
  """The gradient a check tests: a planted bug by name, jax.grad of the custom-VJP objective, or `None`.

  `None` means each loss's hand-derived (analytic) gradient.
  """
  if plant != 'none':
    return gradcheck.PLANTED_BUGS[plant]
  if grad == 'custom_vjp':
    return lambda params, x, targets, **kw: jax.grad(custom_vjp.custom_vjp_objective)(
      params, x, targets, **kw
    )
  return None


def check_all(
  loss_names: Sequence[str],
  penalties: Sequence[str],
  methods: Sequence[str],
  bias_trick: str = 'both',
  *,
  seed: int = 0,
  num_examples: int = 20,
  num_features: int = 6,
  num_classes: int = 4,
  reg: float = 0.0,
  grad: str = 'analytic',
  plant: str = 'none',
  h: float | None = None,
  richardson: bool = False,
  num_coords: int = 64,
  num_directions: int = 8,
  loss_hparams: Callable[[str], Mapping[str, float]] = lambda loss: {},
  on_report: Callable[[gradcheck.GradCheckReport], None] | None = None,
  on_autodiff_only: Callable[[str], None] | None = None,
) -> list:
  """Checks the gradient under test on a random problem `[N, D]`, `C` classes, for every combination.

  Args:
    loss_names, penalties, methods: what to check (methods of `gradcheck.METHODS`).
    bias_trick: 'no', 'yes' or 'both': the plain form, the bias-trick form, or both.
    seed: the key of the random problems and of the sparse / directional draws.
    num_examples, num_features, num_classes: N, D, C of the random problems.
    reg, h, num_coords, num_directions: as in `gradcheck.check_gradients`.
    grad, plant: the gradient under test (see `grad_under_test`).
    richardson: Richardson-extrapolated differences (not for the forward method).
    loss_hparams: the hyperparameters of each loss, by name.
    on_report: called with each report as it is made.
    on_autodiff_only: called with the name of each loss that has no hand-derived `score_grad`: with
      `grad='analytic'` its `jax.grad` is checked against finite differences alone (there is no
      analytic gradient to compare), and its reports say `grad='autodiff'`.

  Returns:
    The reports, in the order made.
  """
  _check_fits(num_examples, num_features, num_classes)
  grad_fn = grad_under_test(grad, plant)
  key = jax.random.PRNGKey(seed)
  reports = []
  for loss in loss_names:
    under_test = grad_fn
    if grad_fn is None and grad == 'analytic' and losses.get_loss(loss).score_grad is None:
      under_test = 'autodiff'
      if on_autodiff_only:
        on_autodiff_only(loss)
    for penalty in penalties:
      for form in FORMS[bias_trick]:
        params, x, targets = gradcheck.random_problem(
          key, loss, num_examples, num_features, num_classes, form
        )
        for method in methods:
          report = gradcheck.check_gradients(
            params,
            x,
            targets,
            loss=loss,
            reg=reg,
            penalty=penalty,
            grad_fn=under_test,
            richardson=richardson and method != 'forward',
            method=method,
            h=h,
            num_coords=num_coords,
            num_directions=num_directions,
            key=jax.random.fold_in(key, 7),
            **loss_hparams(loss),
          )
          if on_report:
            on_report(report)
          reports.append(report)
  return reports


def _check_fits(num_examples, num_features, num_classes):
  """Raises a `ValueError`, with the figures, for a random problem (x, W, the scores in float64, and
  the gradients and temporaries beside them) that cannot fit in the memory of the device it is drawn
  on, before any of it is drawn: a 100,000 x 100,000 x is 80 GB, and the process aborted."""
  n, d, c = num_examples, num_features + 1, num_classes  # the bias-trick form has one more feature
  memory.check_memory(
    4 * 8 * (n * d + c * d + n * c),
    'gradcheck',
    memory.device_memory_available(),
    advice='use fewer --num_examples, --num_features or --num_classes.',
    what=f'a random problem of {n:,} examples, {num_features:,} features and {c:,} classes',
  )
