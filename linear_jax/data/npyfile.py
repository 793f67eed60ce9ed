"""Read-only memory maps of `.npy` files and of the uncompressed arrays inside an `.npz`.

Nothing here unpickles: the header is parsed by NumPy's literal parser, an
array of Python objects is refused from its header alone, and a file shorter
than its header promises is refused before it is mapped. A map reads nothing
until a row is used, so opening a file of any size is instant; the data
layer then reads it once, in blocks (see `chunks.py`).
"""

import errno
import math
import os
import struct
import zipfile

import numpy as np

from linear_jax.data import chunks


def _fail(path, what):
  raise ValueError(f'{path}: {what}')


def check_exists(path):
  """Raises a `ValueError` saying that `path` does not exist: missing, a dangling link, or a link loop.

  Said before any reader tries the file, so a missing `.npz` is not reported
  as "not a zip archive". An existing path (whatever it is) passes.
  """
  if os.path.exists(path):
    return
  if not os.path.islink(path):
    _fail(path, 'no such file.')
  try:
    os.stat(path)
  except OSError as e:
    if e.errno == errno.ELOOP:
      _fail(path, 'a symbolic link loop (it leads back to itself): no such file.')
  _fail(path, f'a symbolic link to {os.readlink(path)}, which does not exist: no such file.')


def _header(f, path):
  """`(shape, fortran_order, dtype)` from the `.npy` header at `f`'s position; `f` ends at the data."""
  try:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      return np.lib.format.read_array_header_1_0(f)
    if version in ((2, 0), (3, 0)):  # 3.0 differs only in allowing UTF-8 in the header
      return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f'unknown format version {version[0]}.{version[1]}')
  except (ValueError, OSError, EOFError, SyntaxError, struct.error) as e:
    raise ValueError(f'{path}: not a valid .npy file ({e}).') from e


def _dtype_of(dtype, path, what):
  """The array's dtype, refusing objects; a 2-byte void (`|V2`) is read as bfloat16."""
  if dtype.hasobject:
    _fail(
      path,
      f'cannot read as {what} without pickle: it holds Python objects (dtype object), refused without '
      'unpickling; save an array of numbers.',
    )
  if dtype.kind == 'V' and dtype.itemsize == 2 and dtype.fields is None:
    return chunks.bfloat16()  # np.save writes bfloat16 (ml_dtypes) as '|V2'
  return dtype


def _check_size(path, shape, dtype, available):
  need = math.prod(shape) * dtype.itemsize  # Python integers: a crafted shape cannot wrap around
  if need > available:
    dims = ' x '.join(str(s) for s in shape)
    _fail(
      path,
      f'truncated: the header promises {dims} {dtype} ({need:,} bytes) but only {max(available, 0):,} '
      'bytes follow it.',
    )


def open_npy(path):
  """A `.npy` file as a read-only memory map (`np.load(mmap_mode='r', allow_pickle=False)`)."""
  check_exists(path)
  try:
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
      shape, fortran, dtype = _header(f, path)
      offset = f.tell()
  except OSError as e:
    raise ValueError(f'{path}: cannot read ({e.strerror}).') from e
  dtype2 = _dtype_of(dtype, path, '.npy')
  _check_size(path, shape, dtype, size - offset)
  if math.prod(shape) == 0:
    return np.zeros(shape, dtype2)  # mmap cannot map zero bytes
  try:
    a = np.load(path, mmap_mode='r', allow_pickle=False)
  except (ValueError, OSError) as e:
    raise ValueError(f'{path}: cannot map as .npy ({e}).') from e
  return a.view(dtype2) if dtype2 != dtype else a


def npz_member(path, archive, name):
  """Array `name` of the archive `path` opened by `np.load`: mapped if stored uncompressed, else read.

  `np.savez` stores arrays uncompressed, so their bytes lie in the file as
  they are and can be mapped like a `.npy`; `np.savez_compressed` ones are
  decompressed into memory (the only way to read them).
  """
  zf = archive.zip
  info = zf.getinfo(name + '.npy')
  if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
    a = archive[name]
    return a.view(_dtype_of(a.dtype, path, '.npz')) if a.dtype.kind == 'V' else a
  with open(path, 'rb') as f:
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b'PK\x03\x04':
      _fail(path, f'not a valid .npz file (bad local header of {name}.npy).')
    name_len, extra_len = struct.unpack('<HH', local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    f.seek(start)
    shape, fortran, dtype = _header(f, path)
    offset = f.tell()
  dtype2 = _dtype_of(dtype, path, '.npz')
  _check_size(path, shape, dtype, min(info.file_size - (offset - start), os.path.getsize(path) - offset))
  if math.prod(shape) == 0:
    return np.zeros(shape, dtype2)
  return np.memmap(
    path, dtype=dtype, mode='r', offset=offset, shape=shape, order='F' if fortran else 'C'
  ).view(dtype2)
