"""A run's pictures drawn by a forked process, so that importing matplotlib overlaps the training.

Importing matplotlib and drawing the default run's two pictures takes about
0.45 s, a quarter of the whole run on digits. `start()`, called by a command
before any JAX work, forks a process that imports `plots` at once and then
waits; `Painter.draw` hands it a picture (the arrays it needs, pickled) and
`Painter.finish` waits for every picture and raises the first error, as
drawing in the process would.

The child touches no JAX: it only imports matplotlib and draws. It ignores
Ctrl-C (the run decides what a stop does) and ends when the run closes its
pipe, or with the run. If it ends early, cannot be reached or does not answer
within `ANSWER_S`, `finish` draws what it did not in the calling process, so
no picture is lost.
"""

from multiprocessing import connection
import os
import pickle
import signal
import sys
import traceback
import warnings

import jax
import numpy as np

_DONE = 'done'
ANSWER_S = 120.0  # a picture takes well under a second; a child silent this long is given up


def start():
  """A `Painter` with its process started, or `None` where this process cannot fork one (not Linux).

  Call it before JAX starts a backend: the process then holds no threads of
  JAX's that the child could inherit in a locked state.
  """
  if sys.platform != 'linux':
    return None
  ours, theirs = connection.Pipe()
  # Ctrl-C is held back over the fork, so that it cannot reach the child before the child ignores it.
  mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
  try:
    with warnings.catch_warnings():
      # Python 3.12+ warns of a fork in a process with threads: before JAX's start these are only NumPy's
      # idle BLAS pool, whose own fork handlers make it safe in the child. The child runs no JAX.
      warnings.simplefilter('ignore', DeprecationWarning)
      pid = os.fork()
    if pid == 0:  # the child: never returns, and never runs the parent's code
      code = 1
      try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        ours.close()
        code = _serve(theirs)
      finally:
        os._exit(code)  # pylint: disable=protected-access  (no atexit handlers of the parent's)
  finally:
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
  theirs.close()
  return Painter(pid, ours)


def _sendable(e):
  """`e` with the child's traceback as a note, if it pickles and can be rebuilt from its `args` (as
  unpickling does); else a RuntimeError with its type and message (an exception whose constructor
  takes other arguments than its `args`)."""
  e.add_note(f'(drawn in the painter process)\n{traceback.format_exc()}')
  try:
    pickle.dumps(e)
    type(e)(*e.args)  # what unpickling calls (BaseException.__reduce__)
    return e
  except Exception:  # noqa: BLE001 - whatever fails, the text goes instead
    return RuntimeError(f'{type(e).__name__}: {e}\n{traceback.format_exc()}')


def _serve(conn):
  """The child's loop: `(name, args)` → `plots.name(*args)`, answering `None` or the error it raised;
  returns the exit status."""
  try:
    from linear_jax.runs import plots  # pylint: disable=import-outside-toplevel
  except Exception:  # noqa: BLE001 - said for each picture asked for
    plots, failed = None, traceback.format_exc()
  while True:
    try:
      job = conn.recv()
    except EOFError:
      return 0
    if job == _DONE:
      return 0
    name, args = job
    try:
      if plots is None:
        raise RuntimeError(f'importing matplotlib failed:\n{failed}')
      getattr(plots, name)(*args)
      conn.send(None)
    except Exception as e:  # noqa: BLE001 - sent back, raised there
      conn.send(_sendable(e))


class Painter:
  """The parent's end: `draw(name, *args)` as often as needed, then `finish()` (or `close()`)."""

  def __init__(self, pid, conn):
    self._pid, self._conn = pid, conn
    self._jobs = []  # asked for and not answered yet

  def draw(self, name, *args):
    """Asks for `plots.name(*args)` (a picture written to the path among `args`); returns at once."""
    # JAX arrays as NumPy's: unpickling a JAX array would start a JAX backend in the child.
    args = jax.tree.map(lambda a: np.asarray(a) if isinstance(a, jax.Array) else a, args)
    self._jobs.append((name, args))
    if self._conn is not None:
      try:
        self._conn.send((name, args))
      except OSError:  # the child has ended: finish() draws it here
        self._conn.close()
        self._conn = None

  def finish(self):
    """Waits for every picture asked for; raises the first error a picture raised (as drawing here would)."""
    try:
      while self._jobs:
        try:
          if self._conn is None or not self._conn.poll(ANSWER_S):
            raise EOFError
          error = self._conn.recv()
        except (EOFError, OSError):  # the child ended early or went silent: the rest is drawn here
          from linear_jax.runs import plots  # pylint: disable=import-outside-toplevel

          jobs, self._jobs = self._jobs, []
          self.close()  # nothing pending for it any more: ended at once
          for name, args in jobs:
            getattr(plots, name)(*args)
          return
        self._jobs.pop(0)
        if error is not None:
          raise error
    finally:
      self.close()

  def close(self):
    """Ends the child and waits for it: once it has drawn the pictures it was given and not answered
    for, else at once (a run stopped by bad input does not wait for matplotlib's import). Safe to call
    again."""
    if self._conn is not None:
      if self._jobs:
        try:
          self._conn.send(_DONE)
        except OSError:
          pass
      else:
        try:
          os.kill(self._pid, signal.SIGKILL)
        except ProcessLookupError:  # ended and reaped already
          pass
      self._conn.close()
      self._conn = None
    if self._pid is not None:
      pid, self._pid = self._pid, None
      try:
        os.waitpid(pid, 0)
      except ChildProcessError:  # reaped already (a process that ignores SIGCHLD reaps by itself)
        pass
