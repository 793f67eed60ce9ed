"""What the processes of a multi-process run agree on: their checks, and checkpoints.

Each process checks its own rows before training (`together`): if one of them
finds bad input, every process stops at once with an error, instead of the
others waiting at their first collective until JAX's timeout. Process 0's
own preparations (its outputs, stale files) are checked the same way.

With `jax.distributed`, the parameters and optimizer state are replicated on
every process, so one copy is enough: process 0 writes it after a barrier
(every process has reached the same step), and on resume every process reads
it from a folder they all see (a shared file system, or one machine). Each
process trains on its own shard of the rows, and that split depends on the
number of processes, so a checkpoint resumes only with the number of
processes that wrote it (`base.Path.check_written_by` refuses another,
naming both).

With one process nothing here is asked: the data path (`base.Path`,
`factory`) answers for itself, so a one-process run never enters this file.
"""

import contextlib

from jax.experimental import multihost_utils
import numpy as np


def barrier(name):
  """Waits until every process arrives here."""
  multihost_utils.sync_global_devices(name)


def any_process(flag):
  """`flag` or-ed over every process (one small collective)."""
  return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))


def from_process_0(value):
  """Process 0's `value` (a float) on every process.

  What each process derives on its own from the same rows (the step size of
  `--learning_rate=auto`) may differ in its last bits between machines; the
  replicated parameters must not.
  """
  return float(multihost_utils.broadcast_one_to_all(np.float32(value)))


@contextlib.contextmanager
def together(what):
  """Runs the block on every process, then raises on every process if it failed on any.

  The failing process raises its own error (a Ctrl-C included); the others
  raise a `ValueError` naming `what` and the process(es) that failed (whose
  output says why).

  It is itself a collective: every process must enter it, the same number of
  times, in the same order, and the block must hold no collective of its own
  (a process that failed before one would leave the others' pairing off).
  """
  error = None
  try:
    yield
  except GeneratorExit:
    raise
  except BaseException as e:  # noqa: BLE001 - re-raised below, after the other processes learn of it
    error = e
  failed = np.asarray(multihost_utils.process_allgather(np.int32(error is not None)))
  if error is None and failed.any():
    bad = [int(i) for i in np.flatnonzero(failed)]
    raise ValueError(
      f'{what}: process(es) {bad} found a problem (their output names it); no process goes on.'
    )
  if error is not None:
    raise error


def check_same_view(path, found):
  """Raises a `ValueError` unless every process does or does not see the checkpoint `path`."""
  seen = np.asarray(multihost_utils.process_allgather(np.int32(bool(found))))
  if seen.min() != seen.max():
    missing = [int(i) for i in np.flatnonzero(seen == 0)]
    raise ValueError(
      f'{path}: process(es) {missing} do not see this checkpoint; resuming with several processes needs '
      'a --workdir that every process reads (a shared file system).'
    )
