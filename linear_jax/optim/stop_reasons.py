"""Why a run stopped: the reasons a run records (`FitResult.stop_reason`), and each said in words.

The words are summary.json's `stop_why` and name the test that ended the run
(`convergence.py`'s, with its tolerance) or the limit it reached.
"""

from linear_jax.optim import convergence

# Why a run stopped, as `FitResult.stop_reason`, summary.json and the last printed line say.
# 'stalled': L-BFGS's line search could not lower f any further (the precision floor) before tol; or the
# objective's plateau, where one feature-scaled step still lowers it (training/plateau.py).
STOP_REASONS = ('converged', 'max_epochs', 'early_stopping', 'diverged', 'interrupted', 'stalled')


def explain(cfg, reason, scale=1.0, plateau_gain=None):
  """Why a run stopped, in words: the stop reason with the test that ended it (`scale`: as
  `convergence.tol` takes it; `plateau_gain`: the last epoch's, where a plateau was measured)."""
  tol = convergence.tol(cfg, scale)
  if reason == 'stalled' and plateau_gain is not None:
    return (
      "stalled: the objective stopped falling, but one step scaled to each feature's units still lowers "
      f'it by {plateau_gain:.2g} of its decrease so far: not the optimum. A constant step stops at its '
      'noise floor (--schedule=adaptive, the default, lowers it), gradient descent crawls where the '
      "features' units differ widely (--preprocess=standardize), and --optimizer=lbfgs reaches the "
      'optimum of a smooth loss'
    )
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
