"""Rows from the host to the device: aligned host copies, one transfer, rows read from a memory map.

A block of an `.npy` map in the training dtype is sent as it is (its rows are
64-byte aligned, and `jax.device_put` on the CPU then reads the mapped pages
without a copy); other blocks are copied once into an aligned buffer. A memory
map is read a block at a time (`blocks`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.data import chunks
from linear_jax.datapath import blocks

DEFAULT_BLOCK_BYTES = 32 * 2**20


ALIGN = 64


def usable_as_is(x, dtype):
  """Whether `x` is already what `host_array` makes: an in-memory, C-ordered, aligned array of `dtype`."""
  return (
    isinstance(x, np.ndarray)
    and not isinstance(x, np.memmap)
    and x.dtype == np.dtype(dtype)
    and x.flags.c_contiguous
    and x.ctypes.data % ALIGN == 0
  )


def host_array(x, dtype, bias_column=False, copy=False, shift=None):
  """`x` as a C-ordered, 64-byte-aligned `[N, D]` array of `dtype`.

  With `bias_column` it is `[N, D + 1]` and its last column is 1. With
  `shift` (`[D]` float64) the array is `x − shift`, subtracted in float64
  before the cast to `dtype` (see `standardize.host_shift`).

  `jax.device_put` on the CPU aliases such an array instead of copying it.
  `x` itself is returned when it already qualifies and no copy is asked for.
  """
  dtype = np.dtype(dtype)
  if not copy and not bias_column and shift is None and usable_as_is(x, dtype):
    return x
  rows, cols = x.shape[0], x.shape[1] + bias_column
  out = chunks.aligned_empty((rows, cols), dtype, ALIGN)
  if bias_column:
    out[:, -1] = 1
  # A memory map is copied a block at a time and its pages handed back as it goes,
  # so the copy, not the copy plus the mapped file, is what stays resident.
  step = (
    max(1, DEFAULT_BLOCK_BYTES // max(1, cols * dtype.itemsize)) if isinstance(x, np.memmap) else max(rows, 1)
  )
  for a in range(0, rows, step):
    b = min(a + step, rows)
    chunks.check_mapped(x)  # a file truncated while mapped: one line, not SIGBUS
    if shift is None:
      out[a:b, : x.shape[1]] = x[a:b]
    else:  # float64 arithmetic (NumPy's buffered loop), then the cast
      np.subtract(x[a:b], shift, out=out[a:b, : x.shape[1]], casting='unsafe')
    blocks.release(x, a, b)
  return out


def to_device(x, dtype, bias_column=False, block_bytes=None, shift=None):
  """`x` `[N, D]` on the default device as an array of `dtype` (`[N, D + 1]` with the bias column).

  With `shift`, `x − shift` (`host_array`).

  On the CPU the device array is host memory: one aligned host array
  (`host_array`), taken without a copy. On an accelerator the rows go over in
  blocks of about `block_bytes` (default `DEFAULT_BLOCK_BYTES`) into one
  device buffer, updated in place, so the host holds one block, not a second
  whole copy of the data beside the one it has; `block_bytes` also forces
  this path on the CPU (for tests). There, half-precision rows travel at
  their size and are widened on the device (`transfer_dtype`).
  """
  dtype = np.dtype(dtype)
  if block_bytes is None and jax.default_backend() == 'cpu':
    return jax.device_put(host_array(x, dtype, bias_column, shift=shift))
  travel = dtype if shift is not None else blocks.transfer_dtype(x, dtype)
  rows, cols = x.shape[0], x.shape[1] + bias_column
  step = max(1, (block_bytes or DEFAULT_BLOCK_BYTES) // max(1, cols * dtype.itemsize))
  if rows <= step:
    return jax.device_put(host_array(x, travel, bias_column, shift=shift)).astype(dtype)
  out = jnp.zeros((rows, cols), dtype)
  for a, b in blocks.spans(rows, step):
    out = _write_rows(out, jax.device_put(host_array(x[a:b], travel, bias_column, shift=shift)), a)
    blocks.release(x, a, b)
  return out


@functools.partial(jax.jit, donate_argnums=0)
def _write_rows(out, block, start):
  """`out` with rows `[start, start + len(block))` replaced by `block` widened to `out`'s dtype, in place
  (`out` is donated)."""
  return jax.lax.dynamic_update_slice_in_dim(out, block.astype(out.dtype), start, axis=0)


def read(x, start, stop, dtype, shift=None):
  """Rows `[start, stop)` of `x` (an array or a memory map) as an aligned array of `dtype`.

  A view of `x` when it already is one (`jax.device_put` on the CPU then reads
  the mapped pages themselves, with no copy), else a fresh copy; with `shift`
  (`standardize.host_shift`), a copy of the rows minus `shift`.

  Raises:
    ValueError: `x` maps a file that has since been truncated (`chunks.check_mapped`).
  """
  chunks.check_mapped(x)  # a file truncated while mapped: one line, not SIGBUS
  view = x[start:stop]
  if shift is None and view.dtype == dtype and view.flags.c_contiguous and view.ctypes.data % ALIGN == 0:
    return np.asarray(view)
  return host_array(view, dtype, copy=True, shift=shift)
