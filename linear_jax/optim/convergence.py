"""When training has converged: the stopping tests of `train.fit`, chosen by `TrainConfig.tol_on`.

* `'objective'`: an epoch is "no change" when the full training objective `f`
  is not below `best − tol · min(|best|, f₀ − best)` (`best`: the lowest `f`
  before it; `f₀`: the objective before training); the run stops after
  `n_iter_no_change` such epochs in a row. With `schedule='adaptive'` those
  epochs divide the learning rate by `ADAPTIVE_FACTOR` instead, and the run
  has converged at the plateau after `ADAPTIVE_DIVISIONS` divisions.
* `'grad_norm'`: stop once `‖∇f(W)‖_∞ ≤ tol` (scipy's L-BFGS `gtol`), `tol` in the
  units of standardized data (`tol`'s `scale`).
* `'none'`: every one of `epochs`.

Each is a pure function of the per-epoch history, so a resumed run stops
where an uninterrupted one does. docs/optimum.md says why the objective's
test is relative to the decrease so far, and why the schedule halves.
"""

TOL_ON = ('objective', 'grad_norm', 'none')
# Halving (scikit-learn divides by 5). Each division lowers the noise floor of a constant mini-batch
# step, and after the first one an ill-conditioned objective is still falling slowly along its flat
# directions: a fifth of the step all but stops that, a half keeps it going. Default runs of digits'
# squared hinge ended 1.5% above f* (SciPy's L-BFGS) with 5 and 0.9% with 2; softmax needed 89 epochs with 5
# and 74 with 2 (benchmarks/defaults.py measures all ten losses).
ADAPTIVE_FACTOR = 2.0
ADAPTIVE_DIVISIONS = 3  # the run has converged at the plateau after this many divisions
# scikit-learn's `MLPClassifier`, whose adaptive schedule this is; 1e-3 left logistic regression on
# breast_cancer 3% above its optimum, 1e-4 1%.
ADAPTIVE_TOL = 1e-4
DEFAULT_TOL = {'objective': 1e-3, 'grad_norm': 1e-4, 'none': 1e-4}


def tol(cfg, scale=1.0):
  """The tolerance `cfg` asks for: `cfg.tol`, or the default of its test (L-BFGS: the gradient norm's;
  the adaptive schedule's: `ADAPTIVE_TOL`). A gradient norm's is in the units of standardized data,
  times `scale` (`records.gradient_scale`: the factor of features and targets left in their own units;
  1 for standardized data)."""
  if cfg.tol is not None:
    value = cfg.tol
  elif cfg.schedule == 'adaptive' and cfg.tol_on == 'objective' and cfg.optimizer != 'lbfgs':
    value = ADAPTIVE_TOL
  else:
    value = DEFAULT_TOL['grad_norm' if cfg.optimizer == 'lbfgs' else cfg.tol_on]
  return value * scale if cfg.optimizer == 'lbfgs' or cfg.tol_on == 'grad_norm' else value


def epochs_without_change(objectives, tol, initial=None):
  """How many of the last epochs in a row did not lower the objective by more than `tol` relative.

  Args:
    objectives: the full training objective after each epoch so far.
    tol: relative decrease that counts as a change, > 0.
    initial: the objective before training, `f₀`; if given, a change is also relative to the
      decrease so far, `f₀ − best`.

  Returns:
    An int: 0 if the last epoch improved on every earlier one by more than
    `tol · |best|` (`tol · min(|best|, f₀ − best)` with `initial`).
  """
  count = 0
  for improved in _changes(objectives, tol, initial):
    count = 0 if improved else count + 1
  return count


def _changes(objectives, tol, initial):
  """Whether each epoch counts as a change: below its best before by `tol` times `|best|` (and, with
  `initial`, times the decrease so far)."""
  best = float('inf')
  for f in objectives:
    scale = abs(best) if initial is None else min(abs(best), max(initial - best, 0.0))
    yield best == float('inf') or f < best - tol * scale
    best = min(best, f)


def plateaus(objectives, tol, n, initial=None):
  """How many times `n` epochs in a row did not change the objective (`epochs_without_change`'s test),
  counting afresh after each: the divisions of an adaptive learning rate."""
  count, found = 0, 0
  for improved in _changes(objectives, tol, initial):
    count = 0 if improved else count + 1
    if count >= n:
      found, count = found + 1, 0
  return found


def _plateaus(cfg, history):
  objectives = [m['train_loss'] for m in history if 'train_loss' in m]  # the evaluated epochs
  # `tol` is the objective's only under `tol_on='objective'` (else a gradient norm's, or unused).
  rel = cfg.tol if cfg.tol is not None and cfg.tol_on == 'objective' else ADAPTIVE_TOL
  return plateaus(objectives, rel, cfg.n_iter_no_change, history[0].get('initial_loss'))


def step_factor(cfg, history):
  """What the learning rate is multiplied by after `history`: `ADAPTIVE_FACTOR^-divisions` for the
  adaptive schedule, else 1."""
  if cfg.schedule != 'adaptive' or not history:
    return 1.0
  return ADAPTIVE_FACTOR ** -min(_plateaus(cfg, history), ADAPTIVE_DIVISIONS)


def converged(cfg, history, scale=1.0):
  """Whether the run whose per-epoch metrics are `history` meets `cfg`'s stopping test (`scale`: `tol`'s)."""
  if cfg.tol_on == 'none' or not history:
    return False
  if cfg.tol_on == 'grad_norm':
    return history[-1]['train_grad_norm'] <= tol(cfg, scale)
  if cfg.schedule == 'adaptive':
    return _plateaus(cfg, history) > ADAPTIVE_DIVISIONS
  # Only evaluated epochs measure the full objective (see TrainConfig.eval_every).
  objectives = [m['train_loss'] for m in history if 'train_loss' in m]
  initial = history[0].get('initial_loss')
  return epochs_without_change(objectives, tol(cfg), initial) >= cfg.n_iter_no_change
