"""Streamed data paths: the splits stay on the host and every pass reads them in blocks.

`Streamed` serves one process (and L-BFGS over several); `Lockstep` is
mini-batch SGD over several processes, each reading its own rows of the same
blocks. The block passes themselves are `stream.py`'s.
"""

import functools

from linear_jax.data import records
from linear_jax.datapath import base
from linear_jax.datapath import standardize
from linear_jax.datapath import stream
from linear_jax.solvers import lbfgs as solvers


class Streamed(base.Path):
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
