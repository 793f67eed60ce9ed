"""Why a run stopped: the reasons a run records (`FitResult.stop_reason`), and each said in words.

The words are summary.json's `stop_why` and name the test that ended the run
(`convergence.py`'s, with its tolerance) or the limit it reached.
"""

from linear_jax.optim import convergence

# Why a run stopped, as `FitResult.stop_reason`, summary.json and the last printed line say.
# 'stalled': L-BFGS's line search could not lower f any further (the precision floor) before tol.
STOP_REASONS = ('converged', 'max_epochs', 'early_stopping', 'diverged', 'interrupted', 'stalled')


def explain(cfg, reason, scale=1.0):
  """Why a run stopped, in words: the stop reason with the test that ended it (`scale`: as
  `convergence.tol` takes it)."""
  tol = convergence.tol(cfg, scale)
  if reason == 'converged' and cfg.optimizer != 'lbfgs' and cfg.tol_on == 'objective':
    if cfg.schedule == 'adaptive':
      return (
        f'converged: the objective stopped falling ({cfg.n_iter_no_change} epochs below {tol:g} of its value '
        f'and of its decrease so far) after {convergence.ADAPTIVE_DIVISIONS} divisions of the learning rate'
      )
    return (
      f'converged: {cfg.n_iter_no_change} epochs in a row lowered the objective by less than '
      f'{tol:g} of its value and of its decrease so far'
    )
  if reason == 'converged':
    given = convergence.tol(cfg)
    units = (
      '' if tol == given else f" ({given:g} in standardized units, times {tol / given:.4g} for the data's)"
    )
    return f'converged: the largest gradient entry is at most {tol:g}{units}'
  if reason == 'max_epochs':
    return f'not converged: the most epochs ({cfg.epochs}) ran out'
  if reason == 'early_stopping':
    return f'early stopping: {cfg.patience} evaluations without a better validation score'
  return reason.replace('_', ' ')
