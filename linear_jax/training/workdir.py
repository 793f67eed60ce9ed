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
import json
import os
import re
import socket
import stat
import zipfile

from linear_jax.training import files

LOCK = '.lock'


class Locked(ValueError):
  """Another live process holds the workdir."""


def _holder(fd):
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 200).decode(errors='replace').strip()
  return text or 'unknown'


def _flock(fd, how, path, flag):
  """`flock(fd, how)` without waiting; raises `Locked`, naming the holder, where a live run holds it."""
  try:
    fcntl.flock(fd, how | fcntl.LOCK_NB)
  except BlockingIOError:
    raise Locked(
      f'{flag}={path} is in use by another run (process {_holder(fd)}); wait for it to end, stop it, '
      f'or choose another {flag}.'
    ) from None


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
    _flock(fd, fcntl.LOCK_EX, path, flag)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f'{os.getpid()} on {socket.gethostname()}\n'.encode())
    yield path
  finally:
    os.close(fd)  # closing releases the lock; the file stays, so no other run races on its creation


# The file that marks a folder as a workdir of this project (`claim`), naming the command whose it is.
MARKER = '.linear_jax-workdir'
# The kinds of file the outputs are.
OUTPUT_SUFFIXES = ('.json', '.jsonl', '.csv', '.png', '.npz', '.html', '.svg')
# The outputs that show whose workdir a folder is where no marker names it (an older version's, or one
# written from Python by `experiment.train_and_evaluate` and its kin): each file's command and a test of
# its contents, so a file of the same name from elsewhere proves nothing.
SIGNATURES = {
  'summary.json': ('train', lambda d: isinstance(d, dict) and {'stop_reason', 'versions'} <= set(d)),
  'sweep.json': ('lr_sweep', lambda d: isinstance(d, dict) and {'models', 'versions'} <= set(d)),
  'path.json': ('lr_sweep', lambda d: isinstance(d, dict) and {'models', 'versions'} <= set(d)),
  'search.json': ('search', lambda d: isinstance(d, dict) and {'gradient_cost', 'rows'} <= set(d)),
  'optimizers.json': ('optimizers', lambda d: isinstance(d, dict) and {'claims', 'versions'} <= set(d)),
  'hard_cases.json': (
    'hard_cases',
    lambda d: isinstance(d, list) and bool(d) and isinstance(d[0], dict) and 'feature_map_accuracy' in d[0],
  ),
  'checkpoint.npz': ('train', None),  # a checkpoint's: its header
  'sweep_checkpoint.npz': ('lr_sweep', None),
  'search_checkpoint.npz': ('search', None),
  'report.html': ('report', None),  # its title
}
_OWNER = re.compile(r'^A workdir of linear_jax (\w+)\b')


def claim(path, flag='--workdir', command=None):
  """Makes `path` the workdir of `command`, or refuses a folder that is not free for it.

  A new or empty folder is taken and marked (`MARKER`, naming `command`). A
  folder whose marker, or whose outputs (`SIGNATURES`), name a command is
  taken again by that command; another command is refused while the folder
  holds anything but the marker and the lock, so one folder never holds two
  commands' outputs side by side. A folder a live run holds (its `.lock`
  locked) is refused before its marker is touched. An unmarked folder holding
  anything else (`/etc`, a home folder, a folder of the user's own figures) is
  refused in one line, before any file is written there. Returns `path`;
  raises `ValueError` (`Locked` for a live run's).
  """
  if os.path.lexists(path) and not os.path.isdir(path):
    raise ValueError(f'{flag}={path} is not a folder.')
  os.makedirs(path, exist_ok=True)
  names = [n for n in os.listdir(path) if not n.startswith(files.TEMP_PREFIX)]
  held = [n for n in names if n not in (MARKER, LOCK)]
  if LOCK in names:
    _refuse_if_running(path, flag)
  marker = os.path.join(path, MARKER)
  if MARKER in names:
    owner = _owner(marker) or _signed_by(path, names)
  else:
    owner = _signed_by(path, names)
    _refuse_foreign(path, flag, names, owner)
  if command and owner and owner != command and held:
    raise ValueError(
      f'{flag}={path} holds the outputs of `{owner}`; each command writes to a folder of its own: '
      f'choose another {flag} for `{command}`.'
    )
  if MARKER in names and owner and (owner == command or not command):
    return path
  files.write_text(
    marker, f'A workdir of linear_jax {command or owner or "runs"}: its runs write their outputs here.\n'
  )
  return path


def _refuse_if_running(path, flag):
  """Raises `Locked` if a live run holds the lock of `path` (its marker is then not to be touched)."""
  try:
    fd = os.open(os.path.join(path, LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
  except OSError:
    return  # not a lock file of its own: `locked` refuses it, naming why
  try:
    _flock(fd, fcntl.LOCK_SH, path, flag)
  finally:
    os.close(fd)


def _refuse_foreign(path, flag, names, owner):
  """Raises unless the unmarked folder `path`, holding `names`, is empty or a workdir of this project."""
  others = sorted(n for n in names if n != LOCK and not _an_output(path, n))
  outputs = sorted(n for n in names if _an_output(path, n))
  if not others and (not outputs or owner):
    return
  shown = [n + '/' * os.path.isdir(os.path.join(path, n)) for n in others or outputs]  # a folder: 'name/'
  listed = ', '.join(shown[:3]) + (f' and {len(shown) - 3} more' if len(shown) > 3 else '')
  why = (
    'files this project did not write' if others else 'files named as its outputs, but none a run of it wrote'
  )

  raise ValueError(
    f'{flag}={path} holds {why} ({listed}); choose a new or empty folder for {flag}, or one an earlier '
    'run used.'
  )


def _signed_by(path, names):
  """The command whose outputs (`SIGNATURES`) the folder `path` holds, or `None`."""
  for name in names:
    if name in SIGNATURES and _an_output(path, name):
      command, test = SIGNATURES[name]
      if _signed(os.path.join(path, name), test):
        return command
  return None


def _signed(file, test):
  """Whether `file` is the output it is named as: a JSON that passes `test`, a checkpoint with its
  header, or the report with its title."""
  try:
    if file.endswith('.npz'):
      with zipfile.ZipFile(file) as z:
        return 'meta.npy' in z.namelist()
    with open(file, 'rb') as f:
      head = f.read(1 << 20)
    if file.endswith('.html'):
      return b'<title>linear_jax:' in head[:4096]
    return len(head) < 1 << 20 and test(json.loads(head))
  except (OSError, ValueError, zipfile.BadZipFile):
    return False


def _an_output(folder, name):
  """Whether `name` in `folder` is a file of one of the outputs' kinds (`OUTPUT_SUFFIXES`)."""
  return name.endswith(OUTPUT_SUFFIXES) and os.path.isfile(os.path.join(folder, name))


def _owner(marker):
  """The command a marker names, or `None` (a marker of an older version, naming none). Raises a
  `ValueError` if it cannot be read: whose folder it is cannot then be told."""
  try:
    with open(marker, encoding='utf-8', errors='replace') as f:
      match = _OWNER.match(f.read(200))
  except OSError as e:
    raise ValueError(f'{marker}: cannot be read ({e.strerror}); whose workdir this is cannot be told.') from e
  owner = match.group(1) if match else None
  return None if owner == 'runs' else owner
