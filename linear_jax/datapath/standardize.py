"""Raw rows standardized where they are used: the float64 shift and scale of a `stream.prepare`d split.

A prepared dataset keeps the file's raw features; each block (or a whole
split moved to the device) is widened to the training dtype and standardized
on the device, `(x − shift) / scale`. Where the cast to the transfer dtype would
round values far from zero, the host subtracts the float64 shift first
(`host_shift`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.datapath import blocks
from linear_jax.datapath import transfer
from linear_jax.optim import step

# `Dataset.extra` key set by `prepare`: the splits hold raw features, standardized per block as they are
# read (`split_affine`: on the device, the shift on the host for files whose cast rounds).
AFFINE = 'standardize_on_device'


# `Dataset.extra` key set by `prepare`: `{split: (file, row of the file the split starts at)}`.
FILE_ROWS = 'file_rows'


def affine(dataset):
  """`(shift, scale)`, float64 `[D]` arrays on the host, for a `prepare`d dataset, else `None`.

  What `make_epoch_fn`, `make_objective_fn`, `make_eval_fn` and `resident.device_data`
  standardize each block with; each split places it with `split_affine`.
  """
  if not dataset.extra.get(AFFINE):
    return None
  return tuple(np.asarray(a, np.float64) for a in (dataset.shift, dataset.scale))


def host_shift(x, dtype):
  """Whether blocks of `x` lose precision on their way to `dtype`, so the host subtracts the shift first.

  A block travels in `blocks.transfer_dtype(x, dtype)`. When NumPy does not count
  that cast as safe (float64 to float32, int32 and wider to float32), a value far
  from zero keeps its rounding error, `|x| · ε`, through the standardization
  after it: int64 values `2^40 + k` in float32 all round to multiples of
  `2^17`. The host then subtracts the float64 shift while it copies the block
  (`transfer.read`), and the cast rounds the small difference instead. (int64 to
  float64 counts as safe: beyond `2^53` it rounds, as it does in memory.)
  """
  xd = np.dtype(x.dtype)
  return not np.can_cast(xd, blocks.transfer_dtype(x, dtype), 'safe')


def split_affine(cfg, x, affine_):
  """`(host shift or None, (shift, scale) on the device in the training dtype, or None)` for split `x`.

  `affine_` is `affine(dataset)`. The shift is subtracted on the host when
  `host_shift(x, cfg.dtype)` (the device's shift is then 0), else on the device.
  """
  if affine_ is None:
    return None, None
  shift, scale = affine_
  on_host = host_shift(x, cfg.dtype)
  device = (np.zeros_like(shift) if on_host else shift, scale)
  return (shift if on_host else None), tuple(jax.device_put(np.asarray(a, cfg.dtype)) for a in device)


def widen(cfg, xb, affine_=None):
  """A block as the step wants it: the training dtype, standardized if `affine_ = (shift, scale)`,
  with the constant-1 feature under the bias trick."""
  xb = xb.astype(cfg.dtype)
  if affine_ is not None:
    xb = (xb - affine_[0]) / affine_[1]
  if cfg.bias_trick:
    xb = jnp.concatenate([xb, jnp.ones((xb.shape[0], 1), xb.dtype)], axis=1)
  return xb


def whole_split(cfg, x, affine_):
  """A whole split of a `prepare`d dataset on the device (`resident.device_data`), as its streamed blocks
  are: moved in the transfer dtype (less the host's shift, `split_affine`), then `widen`ed there."""
  shift, on_device = split_affine(cfg, x, affine_)
  x = transfer.to_device(x, blocks.transfer_dtype(x, cfg.dtype), shift=shift)
  return _widen_whole(x, on_device, structure=step.structural(cfg))


@functools.partial(jax.jit, static_argnames='structure')
def _widen_whole(x, affine_, *, structure):
  return widen(structure, x, affine_)
