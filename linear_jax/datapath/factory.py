"""The one seam where rows reach the device: `make(cfg, dataset)` chooses the run's `DataPath`.

A `DataPath` (`base.py` lists its calls) is everything the code above it may
ask of the rows. `make` is the only code that chooses among the
implementations: `resident.Resident` (the splits on the device),
`parallel_path.DataParallel` (resident, each step's batch split over the
devices by `shard_map` or `pmap`), `streamed_path.Streamed` (blocks read from
the host, one ahead on the device) and `streamed_path.Lockstep` (streamed
mini-batch SGD over several processes, each reading its own rows). Consumers
call the protocol and never ask which one they hold; docs/ARCHITECTURE.md
follows a row from the file to the step in each. Here too: whether a model
fits in memory (`check_fits`); how a loaded dataset becomes the splits a path
reads is `preparation.py`'s.
"""

import jax

from linear_jax.datapath import base
from linear_jax.datapath import model_memory
from linear_jax.datapath import parallel_path
from linear_jax.datapath import resident as on_device
from linear_jax.datapath import stream
from linear_jax.datapath import streamed_path
from linear_jax.optim import step
from linear_jax.solvers import lbfgs as solvers


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
    path = on_device.Resident if cfg.parallel == 'none' else parallel_path.DataParallel
    return path(cfg, dataset, train_weights)
  stream.check_config(cfg)
  steps, _ = step.steps_per_epoch(cfg, len(dataset.x_train))
  if jax.process_count() > 1 and steps > 1 and cfg.optimizer != 'lbfgs':
    return streamed_path.Lockstep(cfg, dataset, train_weights)
  return streamed_path.Streamed(cfg, dataset, train_weights)


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
  return base.any_process(flag)


def stops_alone():
  """Whether this process may stop on its own, between steps (one process); several stop together."""
  return jax.process_count() == 1


def together(what):
  """Runs a block on every process; if it failed on any, raises on every one (`base.together`)."""
  return base.together(what)


def check_fits(cfg, dataset, streamed=None):
  """Raises a `ValueError` for in-memory splits a process of several cannot hold (`resident.check_fits`),
  and for a model whose W, optimizer state and scores cannot fit (`model_memory.check`; `streamed`:
  whether the run streams, `None`: as `make` would decide)."""
  on_device.check_fits(cfg, dataset)
  streamed = on_device.should_stream(cfg, dataset) if streamed is None else streamed
  model_memory.check(cfg, dataset, streamed)
