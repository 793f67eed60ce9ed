"""The data-path tests' `once`: a slow script's result computed once per test run, whichever worker asks."""

import fcntl
import json
import os

import pytest


@pytest.fixture(scope='session')
def once(tmp_path_factory):
  """`once(name, compute)`: what `compute()` returned (JSON) the first time any worker of the run asked.

  Under `pytest -n` the tests of one module may go to different workers, each with its own module
  fixtures; the workers share the run's base folder, so the first to take `name`'s lock computes and
  writes the result, and the others wait for it and read it: a script of a minute runs once, not once
  a worker.
  """
  root = tmp_path_factory.getbasetemp()
  root = root.parent if 'PYTEST_XDIST_WORKER' in os.environ else root
  memo = {}

  def get(name, compute):
    if name not in memo:
      path = root / f'{name}.json'
      with open(root / f'{name}.lock', 'w', encoding='utf-8') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
          path.write_text(json.dumps(compute()), encoding='utf-8')
        memo[name] = json.loads(path.read_text(encoding='utf-8'))
    return memo[name]

  return get
