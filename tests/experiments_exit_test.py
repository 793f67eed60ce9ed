"""How an experiment's process ends (`experiments.common.run`): exit handlers, output and status kept,
the interpreter's teardown skipped, and the ordinary exit where a profiler watches."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# An experiment in miniature: buffered output (a pipe), an exit handler, and the status main asks for.
SCRIPT = textwrap.dedent(
  """
  import atexit, os, sys, threading
  from experiments import common
  class Finalized:  # the interpreter's teardown would finalize it
    def __del__(self):
      os.write(1, b'finalized\\n')
  KEPT = Finalized()
  atexit.register(lambda: print('handler ran'))
  threading.Thread(target=threading.Event().wait, daemon=True).start()  # left running, as JAX's are
  def main(argv):
    print('main ran', argv[1:])
    {end}
  {run}
  print('after run')  # never: the process ends inside run
  """
)


def _run(folder, end, *args, prefix=(), run='common.run(main)'):
  script = folder / 'experiment.py'
  script.write_text(SCRIPT.format(end=end, run=run))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])))
  env.pop('PYTHONUNBUFFERED', None)  # output into a pipe stays in its buffer until flushed
  return subprocess.run(
    [sys.executable, *prefix, str(script), *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )


@pytest.mark.parametrize('end, status', [('return None', 0), ('return 3', 3), ('sys.exit(4)', 4)])
def test_the_status_the_output_and_the_exit_handlers_are_kept(tmp_path, end, status):
  out = _run(tmp_path, end, 'rest')
  assert out.returncode == status, out.stderr
  # Printed into a pipe's buffer, then flushed before the process ends; the handler ran after main;
  # no teardown finalized the module's objects.
  assert out.stdout.splitlines() == ["main ran ['rest']", 'handler ran'], out.stdout
  assert 'after run' not in out.stdout


def test_a_message_as_the_exit_status_goes_to_stderr_with_status_1(tmp_path):
  out = _run(tmp_path, "sys.exit('no such file: x.npy')")
  assert out.returncode == 1
  assert out.stderr.strip().endswith('no such file: x.npy'), out.stderr
  assert out.stdout.splitlines()[-1] == 'handler ran'


def test_an_error_is_a_traceback_and_status_1_as_before(tmp_path):
  out = _run(tmp_path, "raise ValueError('a bug')")
  assert out.returncode == 1
  assert 'ValueError: a bug' in out.stderr


def test_under_a_profiler_the_process_ends_as_usual_so_the_profile_is_written(tmp_path):
  profile = tmp_path / 'run.prof'
  out = _run(tmp_path, 'return 0', prefix=('-m', 'cProfile', '-o', str(profile)))
  assert out.returncode == 0, out.stderr
  assert profile.stat().st_size > 0  # cProfile writes it after the program returns
  assert 'after run' not in out.stdout


def test_the_interpreters_own_exit_would_have_finalized_what_exit_now_leaves(tmp_path):
  out = _run(tmp_path, 'return 3', run='sys.exit(main(sys.argv))')
  assert out.returncode == 3
  assert out.stdout.splitlines() == ['main ran []', 'handler ran', 'finalized'], out.stdout
