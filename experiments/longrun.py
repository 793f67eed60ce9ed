"""What the long-running entry points share: the workdir lock, stop signals, and how to continue.

`guarded(workdir)` holds the workdir's lock (`linear_jax/training/workdir.py`) and
turns SIGTERM / SIGINT into a clean stop (`linear_jax/training/preemption.py`) for the
life of the run; `exit_stopped` prints the one line that names the checkpoint
and the command that continues from it, and exits with
`preemption.EXIT_STATUS` (75) at once.
"""

import contextlib
import os
import shlex
import sys

from linear_jax.training import preemption
from linear_jax.training import workdir as workdir_lib

RESUME_FLAGS = (
  '--resume',
  '--noresume',
  '--resume=true',
  '--resume=false',
  '--resume=True',
  '--resume=False',
)


@contextlib.contextmanager
def guarded(workdir):
  """The lock of `workdir` (none if `None`: a process that writes nothing) and the stop signals."""
  with contextlib.ExitStack() as stack:
    stack.enter_context(preemption.handling())  # first: from the moment the lock names us, a signal is a stop
    if workdir is not None:
      stack.enter_context(workdir_lib.locked(workdir))
    yield


def continue_command(module, argv=None):
  """The command line of this run with `--resume` (and no other `--resume` form) at its end."""
  argv = sys.argv if argv is None else argv
  args = [a for a in argv[1:] if a not in RESUME_FLAGS]
  return shlex.join(['python', '-m', module, *args, '--resume'])


def note_fresh_start(resume, checkpoint):
  """Says on stderr that `--resume` found no checkpoint at `checkpoint`, so the run starts afresh."""
  if resume and checkpoint and not os.path.exists(checkpoint):
    print(f'--resume: {checkpoint} does not exist; starting a new run.', file=sys.stderr, flush=True)


def exit_stopped(module, checkpoint, progress):
  """Says where the stopped run's checkpoint is and how to continue, then exits with status 75."""
  where = f'checkpoint saved to {checkpoint}' if checkpoint else 'no checkpoint (no workdir)'
  print(
    f'Stopped by {preemption.signal_name() or "request"} after {progress}: {where}; '
    f'continue with: {continue_command(module)}',
    file=sys.stderr,
  )
  import jax  # pylint: disable=import-outside-toplevel

  if jax.process_count() > 1:  # no step was abandoned; JAX's shutdown lets the processes leave together
    sys.exit(preemption.EXIT_STATUS)
  sys.stdout.flush()
  sys.stderr.flush()
  # The checkpoint is on disk and every output file closed: exit now, without waiting for a
  # step that was abandoned in flight (see preemption.wait) to finish computing.
  os._exit(preemption.EXIT_STATUS)
