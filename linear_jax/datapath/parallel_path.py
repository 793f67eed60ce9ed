"""Resident splits trained data-parallel: every step's batch split over the devices, the sums added.

`DataParallel` is the `resident.Resident` path under `--parallel=shard_map` or
`pmap`; the compiled epochs are `parallel.py`'s.
"""

import functools

import jax

from linear_jax.datapath import parallel
from linear_jax.datapath import resident


class DataParallel(resident.Resident):
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
