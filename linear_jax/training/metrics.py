"""The record of one epoch: the line `fit` appends to its history and metrics.jsonl."""

import jax
import numpy as np


def epoch_metrics(cfg, path, params, hp, values, epoch, seconds, multiplier, initial):
  """The metrics of epoch `epoch` (counted from 0) whose step objectives were `values`.

  Every line has the training pass's own mean objective (`train_pass_loss`);
  every `cfg.eval_every` epochs and at the last, the train and validation
  splits are evaluated in full (`evaluated` says which), with the full
  gradient norm when the stopping test needs it. The first line also holds
  the objective before training (`initial_loss`).
  """
  metrics = {'epoch': epoch + 1, 'step': (epoch + 1) * path.steps}
  metrics['train_pass_loss'] = float(np.mean(values))
  evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
  metrics['evaluated'] = evaluated
  for split in (('train', 'val') if path.has('val') else ('train',)) if evaluated else ():
    for k, v in jax.device_get(path.evaluate(params, hp, split)).items():
      metrics[f'{split}_{k}'] = float(v)
  if cfg.tol_on == 'grad_norm' and evaluated:
    metrics['train_grad_norm'] = path.grad_norm(params, hp)
  metrics['learning_rate'] = float(cfg.learning_rate * multiplier((epoch + 1) * path.steps))
  metrics['examples_per_s'] = path.num_train / seconds
  metrics['seconds'] = seconds
  if epoch == 0:
    metrics['initial_loss'] = initial
  return metrics
