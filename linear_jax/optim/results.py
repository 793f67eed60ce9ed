"""What a fit returns: `FitResult`, the `Diverged` error, and what "best" means."""

import dataclasses

from linear_jax.maths import model


class Diverged(RuntimeError):
  """The loss became non-finite or exploded; the message names step and rate."""


@dataclasses.dataclass
class FitResult:
  params: model.Params
  best_params: model.Params
  history: list
  best_epoch: int
  stopped_early: bool = False
  interrupted: bool = False
  resumed_from: int = 0
  streamed: bool = False
  stop_reason: str = 'max_epochs'  # one of stop_reasons.STOP_REASONS
  solver: dict | None = None  # L-BFGS: iterations, fevals, grad_norm, objective, converged
  already_done: bool = False  # resumed from the checkpoint of a run that had already stopped
  learning_rate: float | None = None  # the step used ('auto' derived: see learning_rate_info)
  learning_rate_info: dict | None = None  # how an 'auto' step was found (step_size.derive)

  @property
  def plateau_gain(self):
    """The last epoch's `plateau_gain` (training/plateau.py), or `None` where no plateau was measured."""
    return self.history[-1].get('plateau_gain') if self.history else None


def selection_metric(metrics, prefix):
  """What 'best' means: accuracy for classifiers, −MSE for regression (higher is better)."""
  if f'{prefix}accuracy' in metrics:
    return metrics[f'{prefix}accuracy']
  return -metrics[f'{prefix}mse']
