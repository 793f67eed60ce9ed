"""Memory that grows with the outputs times the features: checked before any of it is allocated.

`W` is `[C, D]` (C classes or target columns, D features), and every step
keeps its gradient and the optimizer's state beside it (momentum one more
copy, Adam two, L-BFGS two per curvature pair); the scores of the rows
scored at once are `[rows, C]` (a batch, an evaluated split, a streamed
block); a checkpoint copies the state to the host. A label of 49,999 in a
file of 1 MB asks for 50,000 classes: the scores of the training split alone
are then gigabytes. `check` adds these up and refuses, with the figures and
what to change, when they cannot fit in the free memory
(`resident.memory_budget`: the accelerator's, or the host's on a CPU).
"""

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.data import memory
from linear_jax.datapath import resident
from linear_jax.datapath import stream
from linear_jax.optim import config
from linear_jax.optim import step
from linear_jax.optim import step_size
from linear_jax.solvers import lbfgs as solvers

# Copies of a `[rows, C]` score matrix alive at once: an evaluation (the scores and one temporary of
# the loss; measured: 50,000 classes on 35,000 training rows held 14 GB), a training batch (the
# scores, the probabilities and their gradient), the derived step's Hessian-vector products.
EVAL_COPIES, BATCH_COPIES, CURVATURE_COPIES = 2, 3, 4


def _nbytes(tree):
  return int(
    sum(np.prod(a.shape, dtype=np.int64) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))
  )


def state_bytes(cfg, num_features, num_outputs):
  """`(params, optimizer state)` bytes of one model, from their shapes (`jax.eval_shape`: no allocation)."""
  params, opt_state = jax.eval_shape(
    lambda: step.init_state(cfg, num_features, num_outputs, step.hparams(cfg), 1)
  )
  p = _nbytes(params)
  if cfg.optimizer == 'lbfgs':  # two vectors the size of the parameters per curvature pair
    return p, 2 * solvers.memory_size_for(params) * p
  return p, _nbytes(opt_state)


def scored_rows(cfg, dataset, streamed):
  """`[(rows, copies, what)]`: the rows whose `[rows, C]` scores are held at once, and how often."""
  splits = {s: len(getattr(dataset, f'x_{s}')) for s in ('train', 'val', 'test')}
  split = max(splits, key=splits.get)
  rows = splits[split]
  n, d = splits['train'], dataset.num_features
  if streamed:  # every pass reads blocks of `--block_rows` rows
    block = stream.pass_block_rows(cfg, d, np.dtype(cfg.dtype).itemsize)
    found = [(min(block, rows), EVAL_COPIES, f'a block of {min(block, rows):,} rows (--block_rows)')]
  else:
    found = [(rows, EVAL_COPIES, f'the {rows:,} rows of the {split} split, evaluated at once')]
  if cfg.optimizer == 'lbfgs':
    if not streamed:
      found.append((n, BATCH_COPIES, f'the {n:,} training rows of each L-BFGS objective'))
  else:
    _, batch = step.steps_per_epoch(cfg, max(n, 1))
    found.append((batch, BATCH_COPIES, f'a batch of {batch:,} rows (--batch_size)'))
  if cfg.learning_rate == config.AUTO:
    sample = min(step_size.SAMPLE_ROWS, n)
    found.append((sample, CURVATURE_COPIES, f'the {sample:,} rows the derived step is measured on'))
  return found


def needed(cfg, dataset, streamed):
  """`{part: bytes}` of the memory that scales with the outputs C: the model, its gradient, the
  optimizer's state, the largest scores held at once, the checkpoint's host copy."""
  c = step.num_outputs(cfg, dataset)
  params, opt = state_bytes(cfg, dataset.num_features, c)
  itemsize = jnp.dtype(cfg.dtype).itemsize
  rows, copies, what = max(scored_rows(cfg, dataset, streamed), key=lambda r: r[0] * r[1])
  return {
    f'W [{c:,} x {dataset.num_features:,}], its gradient and update': 3 * params,
    f'the {cfg.optimizer} state': opt,
    f'the scores of {what} [{rows:,} x {c:,}]': copies * rows * c * itemsize,
    'the checkpoint': params + opt,
  }


def check(cfg, dataset, streamed, available=None):
  """Raises a `ValueError` (the figures, what to change) if the model, its optimizer and its scores
  cannot fit beside the resident splits in `available` bytes (`None`: `resident.memory_budget()`)."""
  available = resident.memory_budget() if available is None else available
  parts = needed(cfg, dataset, streamed)
  data = 0 if streamed else resident.bytes_needed(cfg, dataset)
  need = sum(parts.values()) + data
  biggest = max(parts, key=parts.get)
  figures = '; '.join(f'{k} {memory.size_text(v)}' for k, v in parts.items() if v)
  if data:
    figures += f'; the splits {memory.size_text(data)}'
  c = step.num_outputs(cfg, dataset)
  memory.check_memory(
    need,
    dataset.name,
    available,
    _advice(cfg, c, biggest, available - need + parts[biggest]),
    what=f'{c:,} outputs x {dataset.num_features:,} features ({figures})',
  )


def _advice(cfg, c, biggest, room):
  """What to change, for the part that needs the most (`room`: the bytes that part may take)."""
  if biggest.startswith('the scores'):
    rows = max(1, int(max(room, 0) // (BATCH_COPIES * c * jnp.dtype(cfg.dtype).itemsize)))
    return (
      f'score fewer rows at once: --stream --block_rows={rows:,} (and --batch_size at most that), '
      f'or {_fewer(cfg)}.'
    )
  state = '' if cfg.optimizer == 'sgd' else ' (--optimizer=sgd keeps no state beside W)'
  return f'the model itself is too large: {_fewer(cfg)}, or fewer features{state}.'


def _fewer(cfg):
  if cfg.loss_record.targets == 'class':
    return 'fewer classes (the class count is 1 + the largest label: number them 0..C-1)'
  return 'fewer target columns'
