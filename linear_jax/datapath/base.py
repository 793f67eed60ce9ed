"""What every data path shares: the sizes, the sample weights, the checks of the rows, the processes.

A `DataPath` is everything the code above the seam may ask of the rows:

* `epoch(params, opt_state, key, hp) -> (params, opt_state, step_objectives)`:
  one epoch of the compiled step over the training split;
* `evaluate(params, hp, split) -> {metric: device value}` (`has(split)` first);
* `objective(params, hp) -> (f, ∇f)`: the full training objective and its
  gradient; `grad_norm(params, hp)`, the stopping test's `‖∇f‖_∞`;
* `minimize(params, hp, tol, max_iter, ...) -> (params, LbfgsInfo)`: L-BFGS
  over the training split (one compiled loop on resident rows, scipy's
  L-BFGS-B over passes on streamed ones);
* `check()`: the host-side checks of every split's rows, each process its own;
* what the processes of a run agree on: `writer` (process 0 writes),
  `barrier`, `together`, and a checkpoint's `record()`, `check_same_view` and
  `check_written_by`;
* `data_order`: how epoch `e` orders the rows, for a checkpoint's record.

`Path` answers what does not depend on where the rows are; each
implementation (`resident.Resident`, `parallel_path.DataParallel`,
`streamed_path.Streamed` and `Lockstep`) the rest, and `factory.make` alone
chooses among them.
"""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.data import chunks
from linear_jax.data import records
from linear_jax.datapath import multihost
from linear_jax.datapath import standardize
from linear_jax.datapath import stream
from linear_jax.maths import validation
from linear_jax.optim import gradient_norm
from linear_jax.optim import step

SPLITS = ('train', 'val', 'test')


def several():
  """Whether this run has several processes (`jax.distributed` is up, with more than one).

  Asked only once `jax.distributed` is up: `jax.process_count` would start
  JAX's backend, and a caller that loads its data first must still be able
  to call `jax.distributed.initialize` after. What runs once the backend is
  up asks `jax.process_count()` itself (a TPU pod's processes may share one
  run without `jax.distributed.initialize`); with one process, what the
  processes agree on is this process's own (`Path`), and `multihost` is not asked.
  """
  return jax.distributed.is_initialized() and jax.process_count() > 1


def together(what):
  """`multihost.together` with several processes: one process's error in the block stops every process.
  With one process, the block as it is."""
  return multihost.together(what) if several() else contextlib.nullcontext()


def any_process(flag):
  """`flag` or-ed over every process of the run (`flag` itself with one process)."""
  return multihost.any_process(flag) if jax.process_count() > 1 else bool(flag)


def host_weights(dataset, split, dtype, weights=None):
  """Sample weights as a checked host array of `dtype`: `weights`, else `Dataset.w_<split>`, else `None`."""
  w = getattr(dataset, f'w_{split}', None) if weights is None else weights
  if w is None:
    return None
  w = np.asarray(w, np.float64)
  n = len(getattr(dataset, f'x_{split}'))
  if w.shape != (n,) or not np.all(np.isfinite(w)) or (w < 0).any() or not w.sum() > 0:
    raise ValueError(
      f'sample weights of the {split} split must be {n} finite values >= 0, not all 0; '
      f'got shape {w.shape}, min {w.min() if w.size else None}.'
    )
  return w.astype(jnp.dtype(dtype))


class Path:
  """What every implementation shares: the sizes, the checks and what the processes agree on."""

  streamed = False

  def __init__(self, cfg, dataset, train_weights=None):
    self.cfg, self.dataset, self._train_weights = cfg, dataset, train_weights
    self.num_train = len(dataset.x_train)
    self.steps, self.batch = step.steps_per_epoch(cfg, self.num_train)
    self._weights = {}

  def weights(self, split):
    """The split's sample weights where its rows are (`None` without weights), checked once."""
    if split not in self._weights:
      given = self._train_weights if split == 'train' else None
      self._weights[split] = self._place_weights(host_weights(self.dataset, split, self.cfg.dtype, given))
    return self._weights[split]

  @functools.cached_property
  def gradient_scale(self):
    """`records.gradient_scale` of the dataset and the loss, once: what `convergence.tol` multiplies a
    gradient-norm tolerance by."""
    return records.gradient_scale(self.dataset, self.cfg.loss_record, self.cfg.resolved_loss_hparams())

  def has(self, split):
    """Whether `split` has rows."""
    return len(getattr(self.dataset, f'x_{split}')) > 0

  def grad_norm(self, params, hp):
    """`‖∇f(params)‖_∞` of the full training objective, a float."""
    return float(gradient_norm.grad_norm(self.objective(params, hp)[1]))

  def sample_rows(self, n):
    """Up to `n` training rows, evenly spaced over the split, as the step sees them: `(x, y, w)` NumPy
    arrays in the training dtype, standardized, with the bias trick's constant column; `w` `None`
    without weights. Every process takes the same rows."""
    rows = np.unique(np.linspace(0, self.num_train - 1, min(n, self.num_train)).astype(np.int64))
    chunks.check_mapped(self.dataset.x_train)
    chunks.check_mapped(self.dataset.y_train)
    x = np.asarray(self.dataset.x_train[rows], np.float64)
    if self.dataset.extra.get(standardize.AFFINE):  # a `prepare`d dataset holds the file's raw features
      shift, scale = standardize.affine(self.dataset)
      x = (x - shift) / scale
    if self.cfg.bias_trick:
      x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    w = host_weights(self.dataset, 'train', self.cfg.dtype, self._train_weights)
    dtype = np.dtype(self.cfg.dtype)
    return x.astype(dtype), np.asarray(self.dataset.y_train)[rows], None if w is None else np.asarray(w)[rows]

  def check(self):
    """Raises a `ValueError` naming the split, the row and the column of the first bad value, or the
    split whose shape disagrees with the training split's (a `Dataset` may be built by hand)."""
    self._check_shapes()
    spec, c = self.cfg.loss_record, step.num_outputs(self.cfg, self.dataset)
    for split in SPLITS:
      x, y = getattr(self.dataset, f'x_{split}'), getattr(self.dataset, f'y_{split}')
      if split != 'train' and len(x) == 0:
        continue
      self._check_rows(split, x)
      validation.check_targets(y, spec.targets, c, where=f'{self.dataset.name} {split} split')

  def _check_shapes(self):
    ds = self.dataset
    if np.ndim(ds.x_train) != 2:
      raise ValueError(f'{self._where("train")}: features must be [N, D], got shape {np.shape(ds.x_train)}.')
    for split in SPLITS:
      x, y = getattr(ds, f'x_{split}'), getattr(ds, f'y_{split}')
      if not (hasattr(x, 'shape') and hasattr(y, 'shape')):
        raise ValueError(
          f'{self._where(split)}: x and y must be arrays, got {type(x).__name__}, {type(y).__name__}.'
        )
      if len(x) and (np.ndim(x) != 2 or x.shape[1] != ds.num_features):
        raise ValueError(
          f'{self._where(split)}: x is {list(x.shape)}; the training split has {ds.num_features} features.'
        )
      if len(y) != len(x):
        raise ValueError(f'{self._where(split)}: {len(y)} targets for {len(x)} rows.')
    for name in ('shift', 'scale'):
      shape = list(np.shape(getattr(ds, name)))
      if shape not in ([], [ds.num_features]):  # one for every feature, or one per feature
        raise ValueError(f'{ds.name}: {name} is {shape}, not [{ds.num_features}], one per feature.')

  def _check_rows(self, split, x):
    # A memory map is checked block by block, never as a whole, and named by its file's rows.
    file, offset = self.dataset.extra.get(standardize.FILE_ROWS, {}).get(split, (None, 0))
    if isinstance(x, np.memmap):
      stream.check_features(
        x, where=f'{file} ({split} rows)' if file else self._where(split), first_row=offset
      )
    else:
      validation.check_features(x, where=self._where(split))

  def _where(self, split):
    return f'{self.dataset.name} {split} split'

  # ------------------------------------------------ what the processes of a run agree on

  @property
  def writer(self):
    """Whether this process writes the run's files (process 0; every process reads)."""
    return jax.process_index() == 0

  def barrier(self, name):
    """Waits until every process arrives here."""
    if jax.process_count() > 1:
      multihost.barrier(name)

  together = staticmethod(together)

  def agreed(self, value):
    """Process 0's `value` (a float) on every process (`multihost.from_process_0`)."""
    return multihost.from_process_0(value) if jax.process_count() > 1 else value

  def refuse_several_processes(self, why):
    """Raises `ValueError(why)` when the run has several processes."""
    if jax.process_count() > 1:
      raise ValueError(why)

  def record(self):
    """What a checkpoint records of the path: the process and device counts and the data order."""
    return {
      'num_processes': jax.process_count(),
      'num_devices': self.num_devices,
      'data_order': self.data_order,
    }

  @property
  def num_devices(self):
    """The devices a step's batch is split over (1 without `--parallel`)."""
    return 1 if self.cfg.parallel == 'none' else self.cfg.num_devices or jax.device_count()

  def check_same_view(self, path, found):
    """Raises a `ValueError` unless every process does (`found`) or does not see the checkpoint `path`."""
    if jax.process_count() > 1:
      multihost.check_same_view(path, found)

  def check_written_by(self, path, meta):
    """Raises a `ValueError` if checkpoint `path` (its header `meta`) was written by another number of
    processes: each process trains on its own rows, so the split of the rows would differ."""
    wrote, now = meta.get('num_processes', 1), jax.process_count()
    if wrote != now:
      raise ValueError(
        f'{path}: written by a run of {wrote} process(es) but this run has {now}; each process trains '
        f'on its own shard of the data, so resume with --num_processes={wrote}.'
      )
    wrote = meta.get('num_devices', self.num_devices)  # a checkpoint from before the count was kept: as now
    if wrote != self.num_devices:
      raise ValueError(
        f'{path}: written by a run whose steps were split over {wrote} device(s), and this run splits them '
        f'over {self.num_devices}: the sums would be added in another order, and the run resumed would not '
        f'be the one stopped. Resume with --num_devices={wrote}.'
      )
