"""Splits that live on the device: whether they fit, and moving them there once.

`should_stream` decides between resident and streamed splits (`factory.make`
asks it); `device_data` puts every split on the device in the training dtype,
standardizing a `stream.prepare`d split there as its streamed blocks would be.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.data import memory
from linear_jax.datapath import multihost
from linear_jax.datapath import standardize
from linear_jax.datapath import transfer
from linear_jax.optim import step as step_lib

# Stream when the splits need more than this fraction of the free memory.
MEMORY_FRACTION = 0.8


def memory_budget(device=None):
  """Bytes free for the data: the accelerator's free memory, or the host's `MemAvailable` on a CPU."""
  device = device or jax.devices()[0]
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats and 'bytes_limit' in stats:
    return stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  host = memory.memory_available()
  return math.inf if host is None else host


def bytes_needed(cfg, dataset):
  """Bytes that moving the splits to the device takes beyond what they already use (bias column included).

  On the CPU a split that is already an aligned array of the training dtype
  is taken as it is (`transfer.host_array`): it costs nothing more, and the memory it
  holds is already missing from the free memory it is compared with. (Not
  under `--parallel`, which pads a copy to spread over the devices.)
  """
  dt = np.dtype(cfg.dtype)
  in_place = jax.default_backend() == 'cpu' and cfg.parallel == 'none'  # --parallel pads and spreads a copy
  total = 0
  for split in ('train', 'val', 'test'):
    x = getattr(dataset, f'x_{split}')
    if not (in_place and not cfg.bias_trick and transfer.usable_as_is(x, dt)):
      total += len(x) * (x.shape[1] + cfg.bias_trick) * dt.itemsize
    total += np.asarray(getattr(dataset, f'y_{split}')).nbytes
  return total


def should_stream(cfg, dataset):
  """Whether `train.fit` streams: when asked to, for a `prepare`d dataset, or when the splits do not fit.

  With several processes only the first two decide: each process's free
  memory is its own, and every process must take the same path (their
  collectives differ). `check_fits` refuses splits a process cannot hold.
  """
  if cfg.stream or dataset.extra.get(standardize.AFFINE):
    return True
  if multihost.several():
    return False
  return bytes_needed(cfg, dataset) > MEMORY_FRACTION * memory_budget()


def check_fits(cfg, dataset):
  """Raises a `ValueError` (the figures, the `--stream` advice) for in-memory splits this process
  cannot hold, with several processes, where training streams only when asked (`should_stream`)."""
  if not multihost.several() or should_stream(cfg, dataset):
    return
  need, free = bytes_needed(cfg, dataset), memory_budget()
  if need > MEMORY_FRACTION * free:
    raise ValueError(
      f'{dataset.name}: the splits need {need / 1e9:.2f} GB in memory, but process {jax.process_index()} '
      f'has {free / 1e9:.2f} GB free; with several processes training streams only when asked: '
      'add --stream, which reads them in blocks.'
    )


def device_data(cfg, dataset, splits=('train', 'val', 'test')):
  """The `splits` as device arrays in the training dtype (with the constant-1 feature under the bias trick).

  A `prepare`d dataset (raw features, `Dataset.extra[standardize.AFFINE]`) is
  standardized here as its streamed blocks would be (`standardize.split_affine`).
  """
  dt = jnp.dtype(cfg.dtype)
  spec = cfg.loss_record
  ydt = dt if spec.targets == 'real' else jnp.int32
  affine_ = standardize.affine(dataset)

  def put(split):
    x = getattr(dataset, f'x_{split}')
    if affine_ is not None and len(x):  # the streamed blocks' own transform, on the whole split
      shift, on_device = standardize.split_affine(cfg, x, affine_)
      x = transfer.to_device(x, transfer.transfer_dtype(x, dt), shift=shift)
      x = standardize.widen_whole(x, on_device, structure=step_lib.structural(cfg))
    else:
      # One host pass at most (cast and bias column together); an aligned array of the
      # training dtype is then taken by the CPU backend without a copy (see transfer.to_device).
      x = transfer.to_device(x, dt, cfg.bias_trick)
    return x, jnp.asarray(getattr(dataset, f'y_{split}'), ydt)

  return {s: put(s) for s in splits}
