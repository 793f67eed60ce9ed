"""conftest.py's `_process_state`: what one test changes in the process, the next one never sees.

A small suite runs in a fresh pytest, in file order, twice: first in a folder with this conftest.py,
then in a folder beside it that has none. Its first test changes everything the fixture restores,
its second looks: with the fixture it finds the process as the first one found it; without it (the
same process, after the fixture has put back what the first copy changed) it does see a change that
is not undone. The copy of conftest.py waits 0.5 s, not 5, for what a test leaves running to end.
"""

import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SUITE = textwrap.dedent(
  """
  import os
  import signal
  import subprocess
  import sys
  import threading

  import jax
  import jax.numpy as jnp

  import linear_jax as lj
  from linear_jax.maths import losses
  from linear_jax.training import preemption

  FOUND = {}


  def _observe():
    return {
      'SIGINT handler': signal.getsignal(signal.SIGINT),
      'SIGTERM handler': signal.getsignal(signal.SIGTERM),
      'environment': {k: v for k, v in os.environ.items() if k != 'PYTEST_CURRENT_TEST'},
      'working folder': os.getcwd(),
      'sys.argv': list(sys.argv),
      'jax_enable_x64': jax.config.jax_enable_x64,
      'jax_default_matmul_precision': jax.config.jax_default_matmul_precision,
      'losses': dict(losses.LOSSES),
      'penalties': dict(losses.PENALTIES),
      'stop requested': preemption.requested(),
    }


  def test_1_changes_the_process(tmp_path):
    FOUND.update(_observe())
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ['LINEAR_JAX_ADDED'] = 'by test 1'
    del os.environ['LINEAR_JAX_KEPT']
    os.chdir(tmp_path)
    sys.argv[:] = ['changed']
    jax.config.update('jax_enable_x64', not jax.config.jax_enable_x64)
    jax.config.update('jax_default_matmul_precision', 'bfloat16')
    lj.register_loss('process_state_probe', lj.Loss(value=lambda s, t: jnp.square(s[:, 0]), targets='binary'))
    del losses.LOSSES['huber']
    losses.PENALTIES.pop(next(iter(losses.PENALTIES)))
    with preemption.handling():
      os.kill(os.getpid(), signal.SIGINT)
    assert preemption.requested()
    assert {k for k, v in _observe().items() if v != FOUND[k]} == set(FOUND)  # every one changed


  def test_2_finds_what_test_1_found():
    now = _observe()
    assert FOUND, 'test 1 ran first'
    assert [k for k in FOUND if now[k] != FOUND[k]] == []


  def test_3_leaves_a_thread_and_a_child_process_running(tmp_path):
    stop = threading.Event()
    threading.Thread(target=stop.wait, args=(60,), name='left-behind', daemon=True).start()
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    with open(os.environ['LINEAR_JAX_CHILD_PID_FILE'], 'w') as f:
      f.write(str(child.pid))
  """
)


def _run_suite(tmp_path, *args):
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))
  env['LINEAR_JAX_KEPT'] = 'set before the suite'
  env['LINEAR_JAX_CHILD_PID_FILE'] = str(tmp_path / 'child.pid')
  return subprocess.run(
    [sys.executable, '-m', 'pytest', '-p', 'no:randomly', '-p', 'no:cacheprovider', '-rA', *args],
    check=False,  # the suite fails on purpose
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_what_a_test_changes_is_put_back_and_what_it_leaves_running_fails_it(tmp_path):
  suite, bare = tmp_path / 'suite', tmp_path / 'bare'
  for folder in (suite, bare):
    folder.mkdir()
    (folder / 'state_test.py').write_text(SUITE)
  conftest = (ROOT / 'tests' / 'conftest.py').read_text()
  assert conftest.count('\n_GRACE_S = 5.0') == 1
  (suite / 'conftest.py').write_text(conftest.replace('\n_GRACE_S = 5.0', '\n_GRACE_S = 0.5'))
  out = _run_suite(
    tmp_path,
    '--import-mode=importlib',  # two modules named state_test
    'suite/state_test.py',
    'bare/state_test.py',
    '--deselect=bare/state_test.py::test_3_leaves_a_thread_and_a_child_process_running',
  )
  report = out.stdout + out.stderr
  assert 'PASSED suite/state_test.py::test_1_changes_the_process' in report, report
  assert 'PASSED suite/state_test.py::test_2_finds_what_test_1_found' in report, report
  assert 'ERROR suite/state_test.py::test_3_leaves_a_thread_and_a_child_process_running' in report, report
  assert "thread 'left-behind' is still running" in report, report
  assert 'was still running; killed' in report, report
  child = int((tmp_path / 'child.pid').read_text())
  assert not os.path.exists(f'/proc/{child}') or sys.platform != 'linux'  # killed and reaped

  # Without the fixture, test 2 sees what test 1 did: the check above could fail.
  assert 'PASSED bare/state_test.py::test_1_changes_the_process' in report, report
  assert 'FAILED bare/state_test.py::test_2_finds_what_test_1_found' in report, report


def test_a_thread_still_starting_at_teardown_is_waited_for_not_refused(pytestconfig):
  here = str(ROOT / 'tests' / 'conftest.py')  # one of several conftest.py, each a plugin of pytest's
  plugins = pytestconfig.pluginmanager.get_plugins()
  conftest = next(m for m in plugins if getattr(m, '__file__', None) == here)

  class Slow(threading.Thread):
    """A thread that stays between `start` and running for 0.3 s, as a server's new handler can."""

    def _bootstrap(self):
      time.sleep(0.3)
      super()._bootstrap()

  slow = Slow(target=lambda: None, name='still-starting')
  starter = threading.Thread(target=slow.start, name='starter')
  starter.start()
  deadline = time.monotonic() + 5.0
  while slow not in threading.enumerate():
    time.sleep(0.001)
  with pytest.raises(RuntimeError, match='before it is started'):
    slow.join(0)  # what the fixture called before: the teardown failed with this
  conftest._join(slow, deadline)  # pylint: disable=protected-access
  assert not slow.is_alive() and time.monotonic() < deadline
  starter.join()
