"""Every file the project writes: created fresh beside its name, then renamed over it; never through a link.

`replace` writes to a new temporary file in the same folder (`mkstemp`:
`O_CREAT | O_EXCL`, so never an existing file or a link planted there),
fsyncs it and renames it over the name: a link planted at the name is
replaced by the file, not followed, and a crash or a full disk leaves the old
file whole. `append` adds to a file this run created (`O_NOFOLLOW`: a link
put in its place meanwhile is refused). `remove_outputs` deletes only the
names a command writes, and only files or links (never a folder).

An `OSError` while writing (a full disk, a folder in the way, no permission)
becomes a `WriteError`: one line naming the file and the cause.
"""

import errno
import json
import math
import os
import tempfile

# The prefix of every temporary file; `remove_temporary` deletes only names with it.
TEMP_PREFIX = '.tmp-linear_jax-'


# The permissions a plain `open()` would give a new file: `mkstemp` makes it 0600 (read once, at import:
# `os.umask` can only be read by setting it, and a thread writing meanwhile must not see 0).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK

# The two calls that put bytes on disk, named here so a test can make them fail as a full disk does.
_fdopen = os.fdopen
_write = os.write


class WriteError(ValueError):
  """A file of the outputs could not be written; the message is one line naming it."""


def _error(path, e):
  why = e.strerror or str(e)
  if e.errno == errno.ENOSPC:
    why += '; free some space, or choose another folder'
  return WriteError(f'{path}: cannot be written ({why}).')


def finite_json(obj):
  """`obj` with every non-finite float (NaN, ±inf) made `None`: what JSON can hold, as `null`."""
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  if isinstance(obj, dict):
    return {k: finite_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [finite_json(v) for v in obj]
  return obj


def replace(path, write, binary=False, suffix='', sync=True):
  """Calls `write(f)` on a new file beside `path`, then renames it over `path`; returns `path`.

  Raises:
    WriteError: `path` is a folder, or the folder cannot take the file (full, read-only, ...);
      the old file at `path`, if any, is left as it was.
  """
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path) and not os.path.islink(path):
    raise WriteError(f'{path} is a folder, where a file is to be written; move it or choose another folder.')
  tmp = None
  try:
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
    try:
      os.fchmod(fd, FILE_MODE)  # outputs are shared, as a report is: not the temporary file's 0600
    except OSError:
      pass  # a file system without modes (some network mounts) keeps its own
    with _fdopen(
      fd, 'wb' if binary else 'w', **({} if binary else {'encoding': 'utf-8', 'newline': ''})
    ) as f:
      write(f)
      f.flush()
      if sync:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    tmp = None
  except OSError as e:
    raise _error(path, e) from e
  finally:
    if tmp is not None and os.path.lexists(tmp):
      os.remove(tmp)
  return path


def write_text(path, text):
  """`text` as the whole of the file `path` (see `replace`)."""
  return replace(path, lambda f: f.write(text))


def write_json(path, obj, indent=1):
  """`obj` as valid JSON (non-finite numbers as `null`) at `path` (see `replace`)."""
  return replace(
    path, lambda f: json.dump(finite_json(obj), f, indent=indent, allow_nan=False), suffix='.json'
  )


def append(path, text):
  """Adds `text` at the end of the file `path`, which must be a file, not a link (`O_NOFOLLOW`)."""
  try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
  except OSError as e:
    if e.errno == errno.ELOOP:
      raise WriteError(f'{path}: became a symbolic link during the run; not written through it.') from e
    raise _error(path, e) from e
  try:
    data = text.encode()
    while data:
      data = data[_write(fd, data) :]
  except OSError as e:
    raise _error(path, e) from e
  finally:
    os.close(fd)


def remove_outputs(folder, names):
  """Deletes the files (or links) of `names` in `folder`: what a command writes, before it writes again.

  `names` may be one name. A folder of that name is left alone (writing the file then fails, naming it).
  """
  for name in [names] if isinstance(names, str) else names:
    path = os.path.join(folder, name)
    if os.path.islink(path) or os.path.isfile(path):
      os.remove(path)


def remove_temporary(folder, suffix=''):
  """Deletes the temporary files (`TEMP_PREFIX`, ending `suffix`) a crash left in `folder`, nothing else."""
  for name in os.listdir(folder):
    path = os.path.join(folder, name)
    if name.startswith(TEMP_PREFIX) and name.endswith(suffix) and not os.path.isdir(path):
      os.remove(path)
