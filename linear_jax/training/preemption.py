"""SIGTERM and SIGINT as a clean stop: a flag the training loops read between steps.

Inside `handling()` either signal only sets the flag. The loops of `train.fit`,
`sweep.run_sweep` and the search watch it while a step computes (`wait`),
abandon that step, write a checkpoint of the state before it and stop; a
second signal during the write is ignored. Outside `handling()` Ctrl-C raises
`KeyboardInterrupt` as usual. With several processes, `stop_requested()` is
or-ed over all of them, so they stop at the same step (docs/long-runs.md).
"""

import contextlib
import os
import signal
import threading

EXIT_STATUS = 75  # EX_TEMPFAIL of sysexits.h: stopped on request, a checkpoint written; run again to continue
SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received = []  # signal numbers, in the order they came
_handling = []  # non-empty inside handling()


class Stopped(Exception):  # noqa: N818 - a stop, not an error
  """A sweep or search stopped on a signal after writing `checkpoint` (`None`: no workdir)."""

  def __init__(self, checkpoint, progress):
    super().__init__(f'stopped after {progress}; checkpoint {checkpoint}')
    self.checkpoint = checkpoint
    self.progress = progress


def _handler(signum, frame):
  del frame
  _received.append(signum)
  if len(_received) > 1 and _handling and _handling[-1] == 'quit':  # nothing to save: stop now
    raise KeyboardInterrupt
  if len(_received) > 1:  # os.write, not print: a handler may interrupt a print in progress
    os.write(
      2, f'{signal.Signals(signum).name} again: already stopping, the checkpoint is on its way.\n'.encode()
    )


@contextlib.contextmanager
def handling(signals=SIGNALS, second='wait'):
  """Within the block, `signals` set the stop flag instead of killing the process.

  Only the main thread may install handlers; elsewhere this does nothing.
  The previous handlers come back on exit. `second`: what a second signal does: `'wait'` for the
  checkpoint being written (it is said, and ignored), or `'quit'` (raises `KeyboardInterrupt`) where
  there is none to wait for (the report).
  """
  if second not in ('wait', 'quit'):
    raise ValueError(f"second must be 'wait' or 'quit', got {second!r}.")
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.signal(s, _handler) for s in signals}
  _handling.append(second)
  try:
    yield
  finally:
    _handling.pop()
    for s, h in previous.items():
      signal.signal(s, h)


def requested():
  """Whether this process received a stop signal."""
  return bool(_received)


def signal_name():
  """The name of the first stop signal received (`'SIGTERM'`), or `None`."""
  return signal.Signals(_received[0]).name if _received else None


def stop_requested():
  """Whether to stop now: this process's flag, or-ed over every process of a multi-process run."""
  from linear_jax.datapath import factory  # pylint: disable=import-outside-toplevel

  return factory.any_process(requested())


def wait(tree):
  """Waits until the arrays of `tree` are computed; `False` as soon as a stop signal comes first.

  A compiled epoch cannot be interrupted, and Python runs a signal handler
  only between bytecodes, so a loop that blocks on an epoch would hear a
  signal only when the epoch ends. Inside `handling()` (one process), a
  helper thread blocks instead and the loop looks at the flag every 50 ms:
  on a stop it abandons the step in flight and saves the state before it.
  (The abandoned computation runs on; `experiments/longrun.py` exits without
  waiting for it.) Elsewhere this is `jax.block_until_ready`.
  """
  import jax  # pylint: disable=import-outside-toplevel

  from linear_jax.datapath import factory  # pylint: disable=import-outside-toplevel

  if not _handling or not factory.stops_alone():  # processes stop together, at step boundaries
    jax.block_until_ready(tree)
    return True
  done = threading.Event()

  def block():
    try:
      jax.block_until_ready(tree)
    except Exception:  # noqa: BLE001, S110 - raised again below, in the caller's thread
      pass
    finally:
      done.set()

  threading.Thread(target=block, daemon=True).start()
  while not done.wait(0.05):
    if requested():
      return False
  jax.block_until_ready(tree)  # raises here, in the caller's thread, what the computation raised
  return True


def reset():
  """Forgets received signals (for tests that run several stops in one process)."""
  _received.clear()
