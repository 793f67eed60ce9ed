"""A memory map read a block at a time: the blocks' spans, the dtype a block travels in, and its pages.

Pages of a memory map are handed back to the kernel as soon as a block is
read (`release`), and the next block is asked for ahead (`prefetch`), so a
file larger than memory streams with one or two blocks resident.
"""

import mmap

import numpy as np

from linear_jax.data import chunks


def release(x, start, stop):
  """Hands the pages of rows `[start, stop)` of a memory map back to the kernel (a no-op otherwise).

  The pages stay in the page cache; they only stop counting as this
  process's resident memory, and a later read maps them again.
  """
  if stop > start and isinstance(x, np.ndarray):
    chunks.release(x[start:stop])


def prefetch(x, start, stop):
  """Asks the kernel to start reading rows `[start, stop)` of a memory map in the background."""
  if stop > start and isinstance(x, np.ndarray):
    chunks.advise(x[start:stop], mmap.MADV_WILLNEED)


def transfer_dtype(x, dtype):
  """The dtype a block travels in: the file's float dtype if not wider than `dtype`, else `dtype`.

  Always in the machine's byte order: a big-endian file's blocks are copied, swapped.
  """
  xd = np.dtype(x.dtype)
  if np.issubdtype(xd, np.floating) or xd.name == 'bfloat16':
    if xd.itemsize <= np.dtype(dtype).itemsize:
      return xd.newbyteorder('=')
  return np.dtype(dtype)


def rows(a, start, stop):
  """Rows `[start, stop)` of `a` (targets, weights; an array or a memory map) as an array in memory.

  Raises:
    ValueError: `a` maps a file that has since been truncated (`chunks.check_mapped`).
  """
  chunks.check_mapped(a)
  return np.asarray(a[start:stop])


def spans(num_rows, rows):
  """`[(start, stop), ...]`: `num_rows` cut into contiguous blocks of `rows` (the last may be shorter)."""
  return [(a, min(a + rows, num_rows)) for a in range(0, num_rows, rows)]
