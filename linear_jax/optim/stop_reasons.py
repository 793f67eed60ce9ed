"""Why a run stopped: the reasons a run records (`FitResult.stop_reason`), and each said in words.

The words are summary.json's `stop_why` and name the test that ended the run
(`convergence.py`'s, with its tolerance) or the limit it reached.
"""

from linear_jax.optim import convergence

# Why a run stopped, as `FitResult.stop_reason`, summary.json and the last printed line say.
# 'stalled': L-BFGS's line search could not lower f any further (the precision floor) before tol; or the
# objective's plateau, where one step scaled to the features' units still lowers it (training/plateau.py).
STOP_REASONS = ('converged', 'max_epochs', 'early_stopping', 'diverged', 'interrupted', 'stalled')


def explain(cfg, reason, scale=1.0, plateau_gain=None, preprocess=None):
  """Why a run stopped, in words: the stop reason with the test that ended it (`scale`: as
  `convergence.tol` takes it; `plateau_gain`: the last epoch's, where a plateau was measured;
  `preprocess`: the data's, where known, for the advice)."""
  tol = convergence.tol(cfg, scale)
  if reason == 'stalled' and plateau_gain is not None:
    return _stalled(cfg, plateau_gain, preprocess)
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
    most = 'iterations' if cfg.optimizer == 'lbfgs' else 'epochs'  # --max_epochs caps L-BFGS's iterations
    return f'not converged: the most {most} ({cfg.epochs}) ran out'
  if reason == 'early_stopping':
    return f'early stopping: {cfg.patience} evaluations without a better validation score'
  return reason.replace('_', ' ')


def _stalled(cfg, gain, preprocess):
  """Why an objective's plateau is no optimum (`training/plateau.py`), and what would reach it for `cfg`."""
  if gain >= 1.0:
    return (
      'stalled: the objective stopped falling no lower than it started: the step is too large; lower '
      '--learning_rate'
    )
  advice = []
  if cfg.schedule != 'adaptive':
    advice.append(
      f"--schedule={cfg.schedule} stops at its step's noise floor, which --schedule=adaptive lowers"
    )
  if preprocess not in (None, 'standardize'):
    advice.append("gradient descent crawls where the features' units differ widely: --preprocess=standardize")
  if cfg.loss_record.kinks is None and cfg.penalty == 'l2':
    advice.append('--optimizer=lbfgs reaches the optimum of this smooth objective')
  advice.append('a smaller --tol trains on past such a plateau')
  return (
    "stalled: the objective stopped falling, but one step scaled to the features' units still lowers it "
    f'by {gain:.2g} of its value or of its decrease so far: not the optimum ({"; ".join(advice)})'
  )
