"""One run per workdir: an exclusive lock held for the run's whole life.

The lock is `fcntl.flock` on `workdir/.lock`: the kernel releases it when the
holder exits in any way (a clean end, an exception, SIGKILL, a power-off of
the machine), so a crashed run never blocks the next one and there is no
stale lock to clean up by hand. The file keeps the holder's process id and
host, so a refused run can say who holds it. (flock works between processes
of one machine, and across machines only on file systems that implement it,
such as local disks and most NFSv4 mounts.)
"""

import contextlib
import fcntl
import os
import socket

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
  another process holds it.
  """
  os.makedirs(path, exist_ok=True)
  fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
  try:
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
