"""Test settings: float64 available everywhere (training code picks float32 itself), float32 matmuls
in full float32 on every backend, one compilation cache for the whole run in a temporary directory
(never the user's), and every test leaving the process as it found it.

On GPUs JAX's default float32 matmul is TF32 (about 1e-3 relative; see docs/gpus.md),
so tests that compare two float32 computations (streamed against in-memory, 8 devices against one, a
sweep's model against the same model alone) would measure TF32 rounding instead of the property they
test. The environment variable reaches the experiments the tests run in subprocesses too.

Most of the suite's time is XLA compiling the same small programs again: in the other worker of
`-n 2`, in every experiment run as a subprocess, and for each new closure of the same computation.
The run's first process makes one temporary folder, removed at the end, and points JAX's persistent
compilation cache there (every program kept, however fast it compiled) for itself, its xdist
workers and every subprocess they start. The experiments keep theirs in `$XDG_CACHE_HOME` (their
--compilation_cache default), a sub-folder of it: capped, so JAX locks it and scans every entry at
each write, which the tests' thousands of programs would make slow. A program loaded from the
cache is the one XLA compiled, so results do not depend on which test compiled it first; an entry
read while another process writes it is a warning and a compilation, never a wrong program.

Compiling is also why XLA's CPU backend compiles the tests' programs fast rather than well, with three
settings in `XLA_FLAGS` (which the subprocesses inherit): LLVM's lowest optimization level
(`--xla_backend_optimization_level=0`); XLA's classic elemental emitter for fused operations
instead of its MLIR fusion emitters (`--xla_cpu_use_fusion_emitters=false`, which spend a pass
pipeline on each fusion); and each program's LLVM module compiled whole, not cut into parts for
threads to compile in parallel (`--xla_cpu_parallel_codegen_split_count=1`: under `-n` each worker
computes on one core, and a small program's parts cost more than they save). The suite's programs are small
and run briefly: the first two compile its L-BFGS and search programs 3 to 6 times faster, and a
trivial program in 25 ms instead of 45; the third takes a further fifth off XLA's compile time. All are
code-generation settings below XLA's HLO, the program JAX builds and the tests check; users' runs
keep XLA's defaults, and `benchmarks/` measures those. On a machine where JAX has a GPU plugin the
tests keep XLA's defaults too.

A command that must run as its own process (`python -m experiments.train ...`) but need not pay for
importing JAX again runs through the `run_commands` fixture: in a child forked from one process that
imported the library, before JAX started a backend.

The suite runs in random order (pytest-randomly, pinned in requirements-dev.txt): the seed is printed
at the start and at the end, `-p randomly --randomly-seed=N` replays an order and `-p no:randomly`
turns it off. So that no test depends on what ran before it in the same process, `_process_state`
(below) puts back after every test what a test may change: signal handlers, environment variables,
the working folder, `sys.argv`, `jax.config`, the loss and penalty registries and the stop flag of
`linear_jax.training.preemption`; a test that leaves a thread or a child process running fails.
"""

import importlib.metadata
import os
import shutil
import tempfile

import threadpoolctl

os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'highest')
# XLA's CPU backend compiles fast rather than well (before JAX starts its backend; see above). Where
# JAX has a GPU plugin (its CUDA or ROCm wheels), the tests keep XLA's defaults: the GPU's kernels
# would be compiled at the lowest level too.
_GPU_PLUGIN = any(
  (d.metadata['Name'] or '').lower().replace('_', '-').startswith(('jax-cuda', 'jax-rocm'))
  for d in importlib.metadata.distributions()
)
for _flag in (
  ()
  if _GPU_PLUGIN
  else (
    '--xla_backend_optimization_level=0',
    '--xla_cpu_use_fusion_emitters=false',
    '--xla_cpu_parallel_codegen_split_count=1',
  )
):
  if _flag.split('=')[0] not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {_flag}'.strip()

# Under -n with a worker per core, each worker computes on one thread: NumPy's BLAS and XLA's Eigen
# pool otherwise start a thread per core in every worker, and the workers' threads contend for the
# cores (the NumPy-heavy assignment-scale checks took 2-3 times as long in the suite as alone).
if int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '0')) >= (os.cpu_count() or 1):
  os.environ['OPENBLAS_NUM_THREADS'] = os.environ['OMP_NUM_THREADS'] = '1'  # the processes tests start
  threadpoolctl.threadpool_limits(1)  # this one, whose NumPy may have loaded its BLAS already
  if '--xla_cpu_multi_thread_eigen' not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} --xla_cpu_multi_thread_eigen=false'.strip()

_CACHE_ROOT = None  # the folder this process made for the run (None in an xdist worker: it inherits it)
if 'PYTEST_XDIST_WORKER' not in os.environ:
  _CACHE_ROOT = tempfile.mkdtemp(prefix='linear_jax_tests_')
  os.environ['XDG_CACHE_HOME'] = _CACHE_ROOT
  os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(_CACHE_ROOT, 'jax')
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

import json  # noqa: E402
import pathlib  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import jax  # noqa: E402  (after the precision is set for this process and its children)
import pytest  # noqa: E402

from linear_jax.maths import losses  # noqa: E402
from linear_jax.training import preemption  # noqa: E402

jax.config.update('jax_enable_x64', True)
jax.config.update('jax_default_matmul_precision', os.environ['JAX_DEFAULT_MATMUL_PRECISION'])
# Also where JAX was imported before this file (by a plugin) and so read no environment variable.
jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def pytest_unconfigure(config):
  del config
  if _CACHE_ROOT is not None:
    shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


# Signals whose Python-level handler a test (or a library it calls: preemption.handling, asyncio's
# add_signal_handler in nbclient, absl) may replace. SIGKILL and SIGSTOP cannot be caught.
_SIGNALS = tuple(
  s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(s) is not None
)
_GRACE_S = 5.0  # how long a thread or a child process a test leaves behind has to end by itself


def _children():
  """`{pid: command line}` of this process's running children (Linux's /proc; empty elsewhere)."""
  found = {}
  if not os.path.isdir('/proc'):
    return found
  me = os.getpid()
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat', encoding='utf-8', errors='replace') as f:
        state, ppid = f.read().rsplit(')', 1)[1].split()[:2]
      if int(ppid) != me or state == 'Z':  # a zombie has ended; its Popen reaps it
        continue
      with open(f'/proc/{entry}/cmdline', 'rb') as f:
        found[int(entry)] = f.read().replace(b'\0', b' ').decode(errors='replace').strip()
    except (OSError, ValueError):
      continue  # ended meanwhile
  return found


def _wakeup_fd():
  """The file descriptor of `signal.set_wakeup_fd` (asyncio's signal handling sets one), or -1."""
  fd = signal.set_wakeup_fd(-1)
  if fd != -1:
    signal.set_wakeup_fd(fd)
  return fd


def _snapshot():
  return {
    'signals': {s: signal.getsignal(s) for s in _SIGNALS},
    'wakeup_fd': _wakeup_fd(),
    'environ': dict(os.environ),
    'cwd': os.getcwd(),
    'argv': list(sys.argv),
    'jax_config': dict(jax.config.values),
    'losses': dict(losses.LOSSES),
    'penalties': dict(losses.PENALTIES),
    'received': list(preemption._received),  # pylint: disable=protected-access
    'threads': set(threading.enumerate()),
    'children': set(_children()),
  }


def _restore_dict(target, saved, same=lambda a, b: a is b):
  """Makes the mapping `target` equal to `saved` again; whether anything had changed."""
  changed = False
  for key in [k for k in target if k not in saved]:
    del target[key]
    changed = True
  for key, value in saved.items():
    if key not in target or not same(target[key], value):
      target[key] = value
      changed = True
  return changed


def _join(thread, deadline):
  """Waits for `thread` to end, until `deadline`.

  `threading.enumerate` also lists a thread whose `start` has not returned yet (a server's handler
  thread, say), and `join` refuses such a thread until it runs: that refusal is retried, not raised.
  """
  while True:
    try:
      return thread.join(max(0.0, deadline - time.monotonic()))
    except RuntimeError:  # 'cannot join thread before it is started'
      if time.monotonic() >= deadline:
        return None
      time.sleep(0.01)


def _restore(saved):
  """Puts back what `_snapshot` saw; the threads and child processes left running, as messages."""
  for s, handler in saved['signals'].items():
    if signal.getsignal(s) is not handler:
      signal.signal(s, handler)
  if _wakeup_fd() != saved['wakeup_fd']:
    signal.set_wakeup_fd(saved['wakeup_fd'])
  current = os.environ.get('PYTEST_CURRENT_TEST')  # pytest's own, set for every phase
  _restore_dict(os.environ, saved['environ'], same=str.__eq__)
  if current is not None:
    os.environ['PYTEST_CURRENT_TEST'] = current
  os.chdir(saved['cwd'])
  sys.argv[:] = saved['argv']
  for name, value in saved['jax_config'].items():
    if jax.config.values.get(name) != value:
      jax.config.update(name, value)
  penalties_changed = _restore_dict(losses.PENALTIES, saved['penalties'])
  _restore_dict(losses.LOSSES, saved['losses'])
  # Compiled programs are cached by the loss's name. A name the test registered and that is gone now
  # needs nothing: `register_loss` drops the caches if the name comes back with another record. A name
  # given back its record from before the test does, if the test registered another under it meanwhile.
  registered = losses._REGISTERED  # pylint: disable=protected-access
  back = [n for n, r in losses.LOSSES.items() if registered.get(n, r) is not r]
  registered.update({n: losses.LOSSES[n] for n in back})
  if back or penalties_changed:
    jax.clear_caches()
  preemption._received[:] = saved['received']  # pylint: disable=protected-access

  problems = []
  deadline = time.monotonic() + _GRACE_S
  for t in set(threading.enumerate()) - saved['threads']:
    _join(t, deadline)
    if t.is_alive():
      problems.append(f'thread {t.name!r} is still running')
  left = {pid: cmd for pid, cmd in _children().items() if pid not in saved['children']}
  while left and time.monotonic() < deadline:
    time.sleep(0.1)
    left = {pid: cmd for pid, cmd in _children().items() if pid in left}
  for pid, cmd in left.items():
    problems.append(f'child process {pid} ({cmd[:200]}) was still running; killed')
    try:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
      pass
  return problems


@pytest.fixture(autouse=True)
def _process_state():
  """Every test finds the process as the previous one found it, whatever order they run in."""
  saved = _snapshot()
  yield
  problems = _restore(saved)
  if problems:
    pytest.fail('The test left running what it started: ' + '; '.join(problems), pytrace=False)


# Runs `python -m MODULE ARGS...` in CWD for each job of the JSON list in argv[1], each in a child forked
# after the library modules the experiments import are imported (JAX's backend is not started by them, so
# a fork is safe); prints the JSON list of {returncode, stdout, stderr}. A child ends where its program
# does: in `common.exit_now` (os._exit) for an experiment, else by the exception that ends it
# (SystemExit, or any other: a traceback and status 1, as the interpreter does), or by SystemExit(0)
# when the module returns.
_FORKED = r"""
import json, os, runpy, sys, tempfile
import absl.app, linear_jax, linear_jax.runs.experiment, linear_jax.runs.plots  # what the experiments import

def child(module, args, cwd, out, err):
  os.chdir(cwd)
  sys.path[0] = cwd  # what `python -m` puts first
  for stream, fd in ((out, 1), (err, 2)):
    os.dup2(stream.fileno(), fd)
  sys.argv = [module, *args]  # run_module puts the module's file in argv[0], as `python -m` does
  runpy.run_module(module, run_name='__main__', alter_sys=True)
  raise SystemExit(0)

results = []
for module, args, cwd in json.loads(sys.argv[1]):
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    sys.stdout.flush(), sys.stderr.flush()
    if os.fork() == 0:
      child(module, args, cwd, out, err)
    status = os.wait()[1]
    texts = []
    for stream in (out, err):
      stream.seek(0)
      texts.append(stream.read().decode())
  results.append({'returncode': os.waitstatus_to_exitcode(status), 'stdout': texts[0], 'stderr': texts[1]})
print(json.dumps(results))
"""
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def run_commands():
  """`run(jobs)`: `python -m module *args` in `cwd` for each `(module, args, cwd)` of `jobs`, as separate
  processes would run them (each its own folder, `sys.argv`, flags, output and exit status), in children
  forked from one process that imported the library once: each result's `returncode`, `stdout` and
  `stderr`. The code is this tree's (PYTHONPATH), whatever checkout the environment installed."""

  def run(jobs, timeout=240):
    env = dict(
      os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
    )
    out = subprocess.run(
      [sys.executable, '-c', _FORKED, json.dumps([[m, list(a), str(c)] for m, a, c in jobs])],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
      check=False,
    )
    assert out.returncode == 0 and not out.stderr, out.stderr[-3000:]
    return [types.SimpleNamespace(**r) for r in json.loads(out.stdout.splitlines()[-1])]

  return run


# Test files whose tests share an expensive fixture (a report build, a benchmark run, a browser, compiled
# search programs, the multi-device and multi-process scripts): under -n, each is sent whole to one
# worker, so the fixture is built once and no worker waits for the other to build it. Every other test
# is scheduled on its own, as `--dist load` does.
ONE_WORKER = (
  'tests/benchmarks/run_test.py',
  'tests/cli_test.py',
  'tests/datapath/parallel_test.py',
  'tests/datapath/stream_test.py',
  'tests/maths/custom_loss_test.py',
  'tests/runs/demo_browser_test.py',
  'tests/runs/painter_test.py',
  'tests/runs/report_test.py',
  'tests/training/longruns_test.py',
  'tests/tuning/search_compiles_once_test.py',
)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown where it is not installed
def pytest_xdist_make_scheduler(config, log):
  """In place of `--dist load` (what -n chooses): pytest-xdist's scheduling by scope, a scope being a
  whole file for `ONE_WORKER`, else one test. Any other `--dist` asked for is left to pytest-xdist."""
  if config.getoption('dist') != 'load':
    return None
  from xdist.scheduler import LoadScopeScheduling  # pylint: disable=import-outside-toplevel

  class OneWorkerFiles(LoadScopeScheduling):
    def _split_scope(self, nodeid):
      path = nodeid.split('::', 1)[0]
      return path if path in ONE_WORKER else nodeid

  return OneWorkerFiles(config, log)


def _random_order_line(config):
  seed = config.getoption('randomly_seed', None)
  if seed is None:
    return 'Tests ran in file order (pytest-randomly off).'
  return f'Using --randomly-seed={seed}: `-p randomly --randomly-seed={seed}` replays this order.'


def pytest_sessionstart(session):
  """The seed of the random order, also under -q (pytest-randomly prints it only in the header)."""
  reporter = session.config.pluginmanager.get_plugin('terminalreporter')
  if reporter is not None and not hasattr(session.config, 'workerinput') and reporter.verbosity < 0:
    reporter.write_line(_random_order_line(session.config))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
  del exitstatus
  if not hasattr(config, 'workerinput'):
    terminalreporter.write_line(_random_order_line(config))
