"""A whole search comparison as library calls: its problems, its resumable run, search.json and search.png.

The library half of `experiments/search.py` (which keeps the flags, the stop
and exit handling and the printing): `low_dim_problem` builds the 2-D problem,
`open_segments` the resumable checkpoint, `run_problems` runs every method of
`search.compare` on each problem with the same budget, and `write_outputs`
writes search.json and search.png.
"""

import os

from linear_jax.data import datasets as data
from linear_jax.maths import losses
from linear_jax.runs import plots
from linear_jax.training import files
from linear_jax.training import fingerprint
from linear_jax.tuning import search
from linear_jax.tuning import search_state

GRADIENT_COST = 2  # loss evaluations a gradient counts as: two passes over the data


def low_dim_problem(loss, seed):
  """A 2-D problem whose targets fit `loss`: `(name, dataset)` (blobs, binary blobs or linreg; N = 600)."""
  kind = losses.get_loss(loss).targets
  raw = {
    'class': data.blobs(600, 2, 3, seed=seed),
    'binary': data.binary2d(600, seed=seed),
    'real': data.linreg(600, 2, seed=seed),
  }[kind]
  name = '2-D linreg' if kind == 'real' else '2-D blobs'
  return name, data.prepare(raw, name, seed=seed)


def identity(settings, problems):
  """What fixes a search's result: `settings` and each problem's data (`fingerprint.of`)."""
  out = dict(settings)
  for name, ds in problems:
    out[f'data {name}'] = fingerprint.of(ds)
  return out


def open_segments(workdir, identity_dict, checkpoint_every, resume):
  """The `search_state.Segments` at `workdir`/search_checkpoint.npz, removed first unless `resume`."""
  path = os.path.join(workdir, search_state.FILE)
  files.remove_outputs(workdir, ('search.json', 'search.png'))  # the last search's, before any is written
  if not resume:
    files.remove_outputs(workdir, [search_state.FILE])
  return search_state.Segments(path, identity_dict, checkpoint_every, resume)


def run_problems(config, problems, budget, segments=None, **options):
  """Every method of `search.compare` on each `(name, dataset)` of `problems` with the same budget.

  Args:
    config: a `train.TrainConfig`: the objective and gradient descent's learning rate.
    problems: `[(name, dataset)]`.
    budget: loss evaluations each method may spend.
    segments: a `search_state.Segments` (checkpoints, resume) or `None`.
    **options: `population`, `elite`, `mutation_scale`, `step_size`, `proposals`, `init_scale`,
      `batch_size` of `search.compare`.

  Returns:
    `(rows, curves)`: the rows of every problem in order, and `{panel title: that problem's curves}`,
    the title naming its number of weights (`D * C`, plus the biases).
  """
  all_rows, all_curves = [], {}
  for name, dataset in problems:
    rows, curves = search.compare(config, dataset, budget, name=name, segments=segments, **options)
    all_rows += rows
    all_curves[f'{name} ({dataset.num_features * (dataset.num_classes or 1)}+ weights)'] = curves
  return all_rows, all_curves


def write_outputs(workdir, budget, rows, curves):
  """search.json (the budget, the gradient's cost and the rows) and search.png (the curves) in `workdir`."""
  files.write_json(
    os.path.join(workdir, 'search.json'), {'budget': budget, 'gradient_cost': GRADIENT_COST, 'rows': rows}
  )
  plots.search_curves(curves, os.path.join(workdir, 'search.png'))
