"""The one seam where rows reach the device: `make(cfg, dataset)` returns the run's `DataPath`.

A `DataPath` is everything the code above it may ask of the rows:

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

`make` is the only code that chooses among the implementations: `Resident`
(the splits on the device), `DataParallel` (resident, each step's batch
split over the devices by `shard_map` or `pmap`), `Streamed` (blocks read
from the host, one ahead on the device) and `Lockstep` (streamed mini-batch
SGD over several processes, each reading its own rows). Consumers call the
protocol and never ask which one they hold; docs/ARCHITECTURE.md follows a
row from the file to the step in each.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.data import chunks
from linear_jax.data import datasets as data_lib
from linear_jax.data import records
from linear_jax.datapath import model_memory
from linear_jax.datapath import multihost
from linear_jax.datapath import parallel
from linear_jax.datapath import resident as on_device
from linear_jax.datapath import standardize
from linear_jax.datapath import stream
from linear_jax.maths import validation
from linear_jax.optim import convergence
from linear_jax.optim import step
from linear_jax.solvers import lbfgs as solvers

SPLITS = ('train', 'val', 'test')


def make(cfg, dataset, resident=False, train_weights=None):
  """The `DataPath` of `cfg` and `dataset` (checks what the path cannot do; reads no row).

  Args:
    cfg: a `TrainConfig`: `stream`, `parallel`, `num_devices`, `block_rows` and
      the batch size choose the path.
    dataset: a `data.Dataset` (a `stream.prepare`d one streams by default).
    resident: the caller's compiled program needs every row on the device (a
      sweep's K models, a regularization path, search): never stream.
    train_weights: `[N]` sample weights of the training split instead of
      `dataset.w_train` (f* of another weighting, say).

  A split streams when `cfg.stream` asks for it, for a `stream.prepare`d
  dataset, or when the splits do not fit in free memory (`resident.should_stream`).
  """
  streamed = not resident and on_device.should_stream(cfg, dataset)
  if cfg.optimizer == 'lbfgs':
    check_lbfgs(cfg, streamed=streamed)
  if not streamed:
    return (Resident if cfg.parallel == 'none' else DataParallel)(cfg, dataset, train_weights)
  stream.check_config(cfg)
  steps, _ = step.steps_per_epoch(cfg, len(dataset.x_train))
  if jax.process_count() > 1 and steps > 1 and cfg.optimizer != 'lbfgs':
    return Lockstep(cfg, dataset, train_weights)
  return Streamed(cfg, dataset, train_weights)


def check_lbfgs(cfg, streamed=False):
  """The host-side checks of an L-BFGS fit (`ValueError` naming the flag).

  With `--parallel=shard_map` L-BFGS splits the training rows over the
  devices (`spread_rows`), or each streamed block (`streamed`); pmap has no
  L-BFGS, and several processes share one only over streamed blocks.
  """
  solvers.check_smooth(cfg.loss, cfg.penalty, cfg.reg)
  if cfg.parallel == 'pmap':
    raise ValueError(
      '--optimizer=lbfgs has no --parallel=pmap; use --parallel=shard_map, which splits the training '
      'rows over the devices, or drop --parallel.'
    )
  if cfg.parallel == 'shard_map' and not streamed and jax.process_count() > 1:
    raise ValueError(
      '--optimizer=lbfgs over several processes streams the training split: add --stream (each process '
      'then reads its own rows).'
    )


def any_process(flag):
  """`flag` or-ed over every process of the run (itself with one process)."""
  return multihost.any_process(flag)


def stops_alone():
  """Whether this process may stop on its own, between steps (one process); several stop together."""
  return jax.process_count() == 1


def together(what):
  """`multihost.together`: run a block on every process; if it failed on any, raise on every one."""
  return multihost.together(what)


def prepare(
  raw, name, val_fraction, test_fraction, preprocess, *, seed, dtype, stream_file, progress, class_weight
):
  """A `Dataset` of `raw`: its splits prepared in memory (`data.prepare`), or, for a memory map with
  `stream_file`, left in the file to stream (`stream.prepare`: nothing is copied)."""
  if stream_file and isinstance(raw.x, np.memmap):
    dataset = stream.prepare(
      raw, name, val_fraction, test_fraction, preprocess, dtype=dtype, class_weight=class_weight
    )
  else:
    dataset = _prepare_in_memory(
      raw, name, val_fraction, test_fraction, preprocess, seed, dtype, progress, class_weight
    )
  constant = dataset.extra.get(data_lib.CONSTANT)
  if constant and progress:  # said once, whichever path prepared the splits
    listed = ', '.join(str(j) for j in constant[:10]) + (
      f' and {len(constant) - 10} more' if len(constant) > 10 else ''
    )
    progress(
      f'{name}: feature{"s" if len(constant) > 1 else ""} {listed} '
      f'{"are" if len(constant) > 1 else "is"} constant on the training rows (nothing to learn from); '
      'left unscaled.'
    )
  return dataset


def _prepare_in_memory(
  raw, name, val_fraction, test_fraction, preprocess, seed, dtype, progress, class_weight
):
  return data_lib.prepare(
    raw,
    name,
    val_fraction,
    test_fraction,
    preprocess,
    seed=seed,
    dtype=dtype,
    progress=progress,
    class_weight=class_weight,
  )


def holds_raw_features(dataset):
  """Whether `dataset`'s splits hold the file's raw features (a `stream.prepare`d dataset)."""
  return bool(dataset.extra.get(standardize.AFFINE))


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


class _Path:
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

  def has(self, split):
    """Whether `split` has rows."""
    return len(getattr(self.dataset, f'x_{split}')) > 0

  def grad_norm(self, params, hp):
    """`‖∇f(params)‖_∞` of the full training objective, a float."""
    return float(convergence.grad_norm(self.objective(params, hp)[1]))

  def sample_rows(self, n):
    """Up to `n` training rows, evenly spaced over the split, as the step sees them: `(x, y, w)` NumPy
    arrays in the training dtype, standardized, with the bias trick's constant column; `w` `None`
    without weights. Every process takes the same rows."""
    rows = np.unique(np.linspace(0, self.num_train - 1, min(n, self.num_train)).astype(np.int64))
    chunks.check_mapped(self.dataset.x_train)
    chunks.check_mapped(self.dataset.y_train)
    x = np.asarray(self.dataset.x_train[rows], np.float64)
    affine = standardize.affine(self.dataset)
    if affine is not None:
      x = (x - affine[0]) / affine[1]
    if self.cfg.bias_trick:
      x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    w = host_weights(self.dataset, 'train', self.cfg.dtype, self._train_weights)
    dtype = np.dtype(self.cfg.dtype)
    return x.astype(dtype), np.asarray(self.dataset.y_train)[rows], None if w is None else np.asarray(w)[rows]

  def check(self):
    """Raises a `ValueError` naming the split, the row and the column of the first bad value."""
    spec, c = self.cfg.loss_record, step.num_outputs(self.cfg, self.dataset)
    for split in SPLITS:
      x, y = getattr(self.dataset, f'x_{split}'), getattr(self.dataset, f'y_{split}')
      if split != 'train' and len(x) == 0:
        continue
      self._check_rows(split, x)
      validation.check_targets(y, spec.targets, c, where=f'{self.dataset.name} {split} split')

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
    multihost.barrier(name)

  def together(self, what):
    """`multihost.together`: one process's error in the block stops every process."""
    return multihost.together(what)

  def agreed(self, value):
    """Process 0's `value` (a float) on every process (`multihost.from_process_0`)."""
    return multihost.from_process_0(value)

  def refuse_several_processes(self, why):
    """Raises `ValueError(why)` when the run has several processes."""
    if jax.process_count() > 1:
      raise ValueError(why)

  def record(self):
    """What a checkpoint records of the path: the process count and the data order."""
    return {'num_processes': jax.process_count(), 'data_order': self.data_order}

  def check_same_view(self, path, found):
    """Raises a `ValueError` unless every process does (`found`) or does not see the checkpoint `path`."""
    multihost.check_same_view(path, found)

  def check_written_by(self, path, meta):
    """Raises a `ValueError` if checkpoint `path` (its header `meta`) was written by another number of
    processes: each process trains on its own rows, so the split of the rows would differ."""
    multihost.check_process_count(path, meta)


class Resident(_Path):
  """Every split on the device, in the training dtype; the compiled epoch scans its batches."""

  data_order = 'jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)'

  def __init__(self, cfg, dataset, train_weights=None):
    super().__init__(cfg, dataset, train_weights)
    self._eval = step.compiled_eval_fn(cfg)

  @functools.cached_property
  def arrays(self):
    """`{split: (x, y)}` on the device, in the training dtype (moved there on first use)."""
    return on_device.device_data(self.cfg, self.dataset)

  @staticmethod
  def _place_weights(w):
    return None if w is None else jnp.asarray(w)

  @functools.cached_property
  def _epoch(self):
    run, (x, y), w = (
      step.compiled_epoch_fn(self.cfg, self.num_train),
      self.arrays['train'],
      self.weights('train'),
    )
    w_args = () if w is None else (w,)
    return lambda params, opt_state, key, hp: run(params, opt_state, x, y, key, hp, *w_args)

  def epoch(self, params, opt_state, key, hp):
    return self._epoch(params, opt_state, key, hp)

  def evaluate(self, params, hp, split):
    return records.in_target_units(
      self.dataset, self._eval(params, *self.arrays[split], hp, self.weights(split))
    )

  def resident_split(self, split):
    """`(x, y)` of one split on the device (moves that split alone)."""
    if 'arrays' in self.__dict__:
      return self.arrays[split]
    return on_device.device_data(self.cfg, self.dataset, (split,))[split]

  def objective(self, params, hp):
    x, y = self.arrays['train']
    return _value_and_grad(params, x, y, hp, self.weights('train'), structure=step.structural(self.cfg))

  def grad_norm(self, params, hp):
    x, y = self.arrays['train']
    return convergence.full_grad_norm(self.cfg, params, x, y, hp, self.weights('train'))

  def solver_rows(self):
    """`(x, y, w)` of the training split for a compiled solver, spread over the devices under
    `--parallel=shard_map` (`spread_rows`)."""
    x, y = self.arrays['train']
    return spread_rows(self.cfg, x, y, self.weights('train'))

  def minimize(self, params, hp, tol, max_iter, memory_size=None, on_iteration=None, should_stop=None):
    del on_iteration, should_stop  # one compiled loop: nothing runs between its iterations
    x, y, w = self.solver_rows()
    params, info = solvers.solve(self.cfg, params, x, y, hp, w, tol, max_iter, memory_size)
    return params, jax.tree.map(np.asarray, info)

  def spread_models(self, tree):
    """A sweep's arrays with a leading model axis, where its models train (here: as they are)."""
    return tree

  model_devices = 1


class DataParallel(Resident):
  """Resident splits; every step's batch split over the devices (`shard_map` or `pmap`), the sums added."""

  @functools.cached_property
  def _epoch(self):
    (x, y), w = self.arrays['train'], self.weights('train')
    run = parallel.fit_epoch_fn(self.cfg, self.dataset, x, y, w)
    return lambda params, opt_state, key, hp: run(params, opt_state, x, y, key, hp)

  @property
  def model_devices(self):
    return self.cfg.num_devices or jax.device_count()

  def spread_models(self, tree):
    return parallel.shard_models(tree, self.cfg.num_devices)


class Streamed(_Path):
  """The splits stay on the host (a memory map stays one); each pass reads them in blocks."""

  streamed = True

  def __init__(self, cfg, dataset, train_weights=None):
    super().__init__(cfg, dataset, train_weights)
    self.arrays = stream.host_splits(cfg, dataset)
    self.affine = standardize.affine(dataset)
    self._eval = stream.make_eval_fn(cfg, self.affine)

  @staticmethod
  def _place_weights(w):
    return w  # they travel with their rows, block by block

  @functools.cached_property
  def _objective(self):
    (x, y), w = self.arrays['train'], self.weights('train')
    return stream.make_objective_fn(self.cfg, x, y, self.affine, w)

  @functools.cached_property
  def _epoch(self):
    (x, y), w = self.arrays['train'], self.weights('train')
    return stream.make_epoch_fn(self.cfg, x, y, self.affine, w)

  @property
  def data_order(self):
    return 'stream.epoch_order(cfg, jax.random.fold_in(key, epoch), num_examples)'

  def epoch(self, params, opt_state, key, hp):
    x, y = self.arrays['train']
    return self._epoch(params, opt_state, x, y, key, hp)

  def evaluate(self, params, hp, split):
    return records.in_target_units(
      self.dataset, self._eval(params, *self.arrays[split], hp, self.weights(split))
    )

  def objective(self, params, hp):
    return self._objective(params, hp)

  def minimize(self, params, hp, tol, max_iter, memory_size=None, on_iteration=None, should_stop=None):
    memory_size = solvers.memory_size_for(params) if memory_size is None else memory_size
    return solvers.minimize_host(
      lambda p: self._objective(p, hp), params, tol, max_iter, memory_size, on_iteration, should_stop
    )

  def _check_rows(self, split, x):
    # Each process checks the rows it will read, named by their file and the file's row numbers.
    file, offset = self.dataset.extra.get(standardize.FILE_ROWS, {}).get(split, (None, 0))
    mine = stream.local_rows(len(x))
    where = f'{file} ({split} rows)' if file else self._where(split)
    stream.check_features(
      x[mine], where=where, first_row=offset + mine.start, affine_=self.affine, dtype=self.cfg.dtype
    )


class Lockstep(Streamed):
  """Streamed mini-batch SGD over several processes: the same blocks in the same order everywhere,
  each device its own rows of each (`stream.Lockstep`)."""

  data_order = (
    'stream.block_order(jax.random.fold_in(key, epoch), num_blocks), each device its rows (stream.Lockstep)'
  )


@functools.partial(jax.jit, static_argnames=('structure',))
def _value_and_grad(params, x, y, hp, weights, *, structure):
  """The resident split's `(f, ∇f)`: one program per `config.StepConfig` (its loss, penalty, gradient)."""
  return jax.value_and_grad(solvers.objective_fn(structure, x, y, hp, weights))(params)


def check_fits(cfg, dataset, streamed=None):
  """Raises a `ValueError` for in-memory splits a process of several cannot hold (`resident.check_fits`),
  and for a model whose W, optimizer state and scores cannot fit (`model_memory.check`; `streamed`:
  whether the run streams, `None`: as `make` would decide)."""
  on_device.check_fits(cfg, dataset)
  streamed = on_device.should_stream(cfg, dataset) if streamed is None else streamed
  model_memory.check(cfg, dataset, streamed)


def spread_rows(cfg, x, y, weights=None):
  """`(x, y, weights)` with the rows split over the devices under `--parallel=shard_map`.

  As they are otherwise (one device, or several processes). The rows are
  padded to a multiple of the device count with weight 0 (the weights are 1
  where there were none), so the weighted mean is the mean over the real
  rows; the padding is one transient copy on the first device. The solver's
  products then run where the rows are, and XLA adds the devices' sums.
  """
  where = stream.placement(cfg)
  if where is None:
    return x, y, weights
  pad = -x.shape[0] % where.devices
  w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
  padded = lambda a: jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
  return jax.device_put(tuple(padded(a) for a in (x, y, w)), where.split)
