"""Tests of linear_jax.workdir: one run per workdir, released on any exit of the holder."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from linear_jax.training import workdir

ROOT = pathlib.Path(__file__).resolve().parents[2]

HOLD = r"""
import sys, time
from linear_jax.training import workdir
with workdir.locked(sys.argv[1]):
  print('locked', flush=True)
  time.sleep(600)
"""


def test_second_lock_is_refused_naming_workdir_and_holder(tmp_path):
  with workdir.locked(str(tmp_path)):
    with pytest.raises(workdir.Locked, match=rf'--workdir={tmp_path} is in use .*process {os.getpid()} on '):
      with workdir.locked(str(tmp_path)):
        pass
  with workdir.locked(str(tmp_path)):  # released on leaving the block
    pass


def test_lock_is_released_when_the_holder_dies(tmp_path):
  proc = subprocess.Popen(
    [sys.executable, '-c', HOLD, str(tmp_path / 'w')], cwd=ROOT, stdout=subprocess.PIPE, text=True
  )
  try:
    assert proc.stdout.readline().strip() == 'locked'
    with pytest.raises(workdir.Locked, match=f'process {proc.pid} on'):
      with workdir.locked(str(tmp_path / 'w')):
        pass
    proc.send_signal(signal.SIGKILL)  # no clean-up code runs: the kernel releases the lock
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    proc.stdout.close()
  t = time.perf_counter()
  with workdir.locked(str(tmp_path / 'w')):  # a dead holder never blocks the next run
    assert (tmp_path / 'w' / workdir.LOCK).read_text().startswith(f'{os.getpid()} on ')
  assert time.perf_counter() - t < 1  # at once, no waiting for a timeout
