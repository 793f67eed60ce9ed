"""One run per workdir, and only in a folder of its own: an exclusive lock held for the run's whole life.

The lock is `fcntl.flock` on `workdir/.lock`: the kernel releases it when the
holder exits in any way (a clean end, an exception, SIGKILL, a power-off of
the machine), so a crashed run never blocks the next one and there is no
stale lock to clean up by hand. The file keeps the holder's process id and
host, so a refused run can say who holds it. (flock works between processes
of one machine, and across machines only on file systems that implement it,
such as local disks and most NFSv4 mounts.)
"""

import contextlib
import errno
import fcntl
import os
import re
import socket
import stat

from linear_jax.training import files

LOCK = '.lock'


class Locked(ValueError):
  """Another live process holds the workdir."""


def _holder(fd):
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 200).decode(errors='replace').strip()
  return text or 'unknown'


@contextlib.contextmanager
def locked(path, flag='--workdir'):
  """Holds the lock of the folder `path` (created if missing) for the block.

  Raises `Locked` at once, naming `path` and the holder's process id, if
  another process holds it, and a `ValueError` if `.lock` is a link (symbolic or hard), a pipe or a folder.
  """
  os.makedirs(path, exist_ok=True)
  lock = os.path.join(path, LOCK)
  try:  # never through a link planted at its name (nor block on a pipe): the lock writes to its file
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
  except OSError as e:
    why = 'a symbolic link' if e.errno == errno.ELOOP else e.strerror
    raise ValueError(
      f'{lock}: cannot be the lock of {flag}={path} ({why}); remove it or choose another {flag}.'
    ) from e
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a pipe, or a hard link to another file
      raise ValueError(
        f'{lock}: cannot be the lock of {flag}={path} (not a file of its own); remove it or choose '
        f'another {flag}.'
      )
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise Locked(
        f'{flag}={path} is in use by another run (process {_holder(fd)}); wait for it to end, stop it, '
        f'or choose another {flag}.'
      ) from None
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f'{os.getpid()} on {socket.gethostname()}\n'.encode())
    yield path
  finally:
    os.close(fd)  # closing releases the lock; the file stays, so no other run races on its creation


# The file that marks a folder as a workdir of this project (`claim`), naming the command whose it is.
MARKER = '.linear_jax-workdir'
# The kinds of file the outputs are; and files no one but this project writes, whose presence shows that
# a folder without the marker is a workdir of an older version, or one written from Python.
OUTPUT_SUFFIXES = ('.json', '.jsonl', '.csv', '.png', '.npz', '.html', '.svg')
OURS_ALONE = (LOCK, 'metrics.jsonl', 'checkpoint.npz', 'sweep_checkpoint.npz', 'search_checkpoint.npz')
_OWNER = re.compile(r'^A workdir of linear_jax (\w+)\b')


def claim(path, flag='--workdir', command=None):
  """Makes `path` the workdir of `command`, or refuses a folder of files this project did not write.

  A new or empty folder is taken and marked (`MARKER`, naming `command`). A
  marked folder is taken again by the command it names (a marker naming none
  by any); another command's is refused while it holds anything but the
  marker and the lock, so one folder never holds two commands' outputs side
  by side. An unmarked folder of outputs (`OUTPUT_SUFFIXES`) with one of the
  files only this project writes (`OURS_ALONE`: an older version's workdir,
  or one written by `experiment.train_and_evaluate` and its kin) is taken
  and marked; anything else (`/etc`, a home folder, a folder of the user's
  own figures) is refused in one line, before any file is written there.
  Returns `path`; raises `ValueError`.
  """
  if os.path.lexists(path) and not os.path.isdir(path):
    raise ValueError(f'{flag}={path} is not a folder.')
  os.makedirs(path, exist_ok=True)
  names = [n for n in os.listdir(path) if not n.startswith(files.TEMP_PREFIX)]
  marker = os.path.join(path, MARKER)
  if MARKER in names:
    owner = _owner(marker)
    held = [n for n in names if n not in (MARKER, LOCK)]
    if command and owner and owner != command and held:
      raise ValueError(
        f'{flag}={path} holds the outputs of `{owner}`; each command writes to a folder of its own: '
        f'choose another {flag} for `{command}`.'
      )
    if owner == command or (owner and not command):
      return path
  else:
    _refuse_foreign(path, flag, names)
  files.write_text(
    marker, f'A workdir of linear_jax {command or "runs"}: its runs write their outputs here.\n'
  )
  return path


def _refuse_foreign(path, flag, names):
  """Raises unless the unmarked folder `path`, holding `names`, is empty or a workdir of this project."""
  others = sorted(n for n in names if n != LOCK and not _an_output(path, n))
  outputs = sorted(n for n in names if _an_output(path, n))
  if not others and (not outputs or set(names) & set(OURS_ALONE)):
    return
  shown = others or outputs
  listed = ', '.join(shown[:3]) + (f' and {len(shown) - 3} more' if len(shown) > 3 else '')
  why = (
    'files this project did not write'
    if others
    else "files named as this project's outputs, but none a run of it alone writes"
  )
  raise ValueError(
    f'{flag}={path} holds {why} ({listed}); choose a new or empty folder for {flag}, or one an earlier '
    'run used.'
  )


def _an_output(folder, name):
  """Whether `name` in `folder` is a file of one of the outputs' kinds (`OUTPUT_SUFFIXES`)."""
  return name.endswith(OUTPUT_SUFFIXES) and os.path.isfile(os.path.join(folder, name))


def _owner(marker):
  """The command a marker names, or `None` (an older marker, or one that cannot be read)."""
  try:
    with open(marker, encoding='utf-8', errors='replace') as f:
      match = _OWNER.match(f.read(200))
  except OSError:
    return None
  owner = match.group(1) if match else None
  return None if owner == 'runs' else owner
