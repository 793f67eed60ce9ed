r"""python tools/compare_outputs.py record --repo /path/to/tree --out outputs.json
python tools/compare_outputs.py compare before.json after.json [--rtol 1e-6]

Behaviour-preservation check for restructuring linear_jax: `record` runs the
command-line experiments (train, lr_sweep, search, gradcheck, optimizers,
hard_cases, report) of the tree at --repo on small data with fixed seeds, and
writes every number they output to one JSON file; `compare` reads two such
files and exits 1, listing every difference (the first 50 values, plus every
added or missing key), unless all recorded values are equal.

Only the command line (`python -m experiments.NAME --flags`, run with cwd and
PYTHONPATH set to --repo, so that tree's `experiments` and `linear_jax` are
imported, whatever is installed) and the files the commands write are used:
this script never imports linear_jax, whose module paths may change.

Each case runs in its own temporary workdir (a fresh XLA compilation cache per
`record`, never the user's). What is recorded, under stable keys
`CASE/FILE:PATH`:

  *.json            every leaf (numbers, strings, booleans, null) by JSON path
  *.jsonl           every leaf of every line, `[LINE].path`
  *.csv             every cell, `[ROW].COLUMN`
  *.npz             every array: dtype, shape, sha256 of its bytes and every
                    element exactly (floats as float.hex); min/max/mean are kept
                    beside it for the reader ("summary", not compared); a string
                    holding a JSON record (checkpoints' `meta`) by its leaves, as
                    a .json file
  *.html            every number of the report's text, tables cell by cell by
                    column header (embedded images dropped)
  *.png             only that the file exists (pixels depend on matplotlib)
  other files       only that the file exists
  stdout            every number of every line, `stdout:LINE.N` (the line with
                    its numbers as # is kept as context, not compared)
  exit status       `CASE/returncode`

Excluded (timings, the environment, file system locations): JSON/CSV keys in
EXCLUDED_KEYS or ending in one of EXCLUDED_KEY_SUFFIXES, HTML table columns
headed as in EXCLUDED_COLUMNS, and in stdout and HTML text the timing tokens
TIMING_PATTERNS match (e.g. `4.7 s`, `1,684 ex/s`). Paths are replaced by
<REPO> and <TMP> before anything is parsed. Every excluded key met is listed
in the output's "excluded" section, so a reader sees what was not compared;
NONDETERMINISTIC lists values left out because they differ run to run, with
the reason.
"""

import argparse
import csv
import hashlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

# ------------------------------------------------------------------------------------------------
# What is not compared.

# JSON / CSV keys (the last component of a path, compared whole) that are timings or describe the
# environment or file system rather than the computation.
EXCLUDED_KEYS = frozenset(
  {
    'seconds',  # wall-clock time (summary.json, metrics.jsonl, sweep.json, search, optimizers, ...)
    'time',
    'times',
    'elapsed',
    'wall_time',
    'wall_seconds',
    'compile_seconds',
    'train_seconds',
    'total_seconds',
    'examples_per_s',  # throughput (metrics.jsonl)
    'examples_per_second',
    'date',
    'timestamp',
    'host',
    'hostname',
    'pid',
    'versions',  # python/jax/numpy versions, device and backend names (summary.json)
    'version',
    'workdir',  # the flags as recorded in summary.json: paths of this run
    'data_dir',
    'data_path',
    'labels_path',
    'test_path',
    'test_labels_path',
    'json_out',
    'compilation_cache',
    'coordinator_address',  # holds a free port, different every run
    'path',
    'paths',
  }
)
# Keys ending in one of these (e.g. `best_seconds`, `per_second`, `sweep_seconds`).
# (Not '_time': `sgd inverse_time` is a schedule's name in optimizers.json.)
EXCLUDED_KEY_SUFFIXES = ('_seconds', '_per_s', '_per_second', '_elapsed', '_path', '_dir')
# Keys naming a series against wall-clock time (optimizers.json: f − f* against seconds).
EXCLUDED_KEY_PREFIXES = ('seconds_', 'time_', 'wall_')

# HTML table columns (header text, lower case) that hold timings.
EXCLUDED_COLUMNS = frozenset({'seconds', 'time', 'time (s)', 's', 'wall time'})

# Timing tokens dropped from stdout lines and HTML text before their numbers are read.
TIMING_PATTERNS = (
  r'seconds per epoch \{[^}]*\}',  # optimizers: "seconds per epoch {'mini-batch sgd': 0.0013, ...}"
  r'\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?\s*(?:ex|examples|it|steps|models|evals|evaluations)/s\b',
  r'\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?\s*(?:s|ms|µs|us|sec|secs|second|seconds|min|mins|minutes|h|hours)\b',
)

# Text tables in stdout (search, optimizers) whose header's last column is one of EXCLUDED_COLUMNS:
# the last number of each of their rows is dropped (until a blank line, or a line that is not a
# `| ... |` row for such a table).
#
# stdout lines left out whole (regular expression -> why).
EXCLUDED_LINES = {
  r'^\[Gloo\]': 'printed by the Gloo library when processes connect, not by the program; where it '
  "falls among the program's own lines is not fixed",
}

# Values that differ from run to run of the same tree, left out with the reason (a regular
# expression on the full key -> why). Two `record`s of the tree before the restructuring (2 CPU
# cores, default XLA threading) gave equal values everywhere once the checkpoints' `meta` JSON was
# read by its leaves (its `history[*].seconds` are timings), so nothing is left out here.
NONDETERMINISTIC = {}

# ------------------------------------------------------------------------------------------------
# The cases.

TWO_PROCESS_ARGS = [
  '--dataset=blobs',
  '--num_examples=301',
  '--num_features=4',
  '--full_batch',
  '--epochs=5',
  '--tol_on=none',
  '--plots=false',
  '--learning_rate=0.5',
  '--parallel=shard_map',
  '--seed=0',
]
FOUR_CPU_DEVICES = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}

# name -> (experiment, flags, extra environment, processes). {workdir}: the case's own workdir;
# {data}: the folder with the npy files `make_data` writes.
CASES = {
  # The README's first command as the command line runs it: the derived step, the adaptive schedule,
  # and the objective's stopping test.
  'train_defaults': ('train', ['--plots=false'], {}, 1),
  'train_digits': (
    'train',
    ['--dataset=digits', '--max_epochs=3', '--tol_on=none', '--plots=false', '--seed=0'],
    {},
    1,
  ),
  'train_hinge_momentum': (
    'train',
    [
      '--dataset=breast_cancer',
      '--loss=hinge',
      '--optimizer=momentum',
      '--momentum=0.9',
      '--learning_rate=0.01',
      '--schedule=step',
      '--decay_epochs=2',
      '--batch_size=32',
      '--max_epochs=4',
      '--tol_on=none',
      '--plots=false',
      '--seed=1',
    ],
    {},
    1,
  ),
  'train_regression': (
    'train',
    [
      '--dataset=diabetes',
      '--loss=l2',
      '--penalty=l1',
      '--reg=0.01',
      '--learning_rate=0.01',
      '--batch_size=32',
      '--max_epochs=4',
      '--tol_on=none',
      '--plots=false',
      '--seed=0',
    ],
    {},
    1,
  ),
  'train_lbfgs': (
    'train',
    ['--dataset=digits', '--optimizer=lbfgs', '--reg=0.01', '--max_epochs=25', '--plots=false', '--seed=0'],
    {},
    1,
  ),
  'train_stream': (
    'train',
    [
      '--dataset=npy',
      '--data_path={data}/x.npy',
      '--labels_path={data}/y.npy',
      '--stream',
      '--block_rows=64',
      '--batch_size=32',
      '--max_epochs=3',
      '--tol_on=none',
      '--plots=false',
      '--seed=0',
    ],
    {},
    1,
  ),
  'train_shard_map': (
    'train',
    [
      '--dataset=digits',
      '--parallel=shard_map',
      '--batch_size=64',
      '--max_epochs=3',
      '--tol_on=none',
      '--plots=false',
      '--seed=0',
    ],
    FOUR_CPU_DEVICES,
    1,
  ),
  'train_stream_shard_map': (
    'train',
    [
      '--dataset=npy',
      '--data_path={data}/x.npy',
      '--labels_path={data}/y.npy',
      '--stream',
      '--block_rows=64',
      '--batch_size=32',
      '--parallel=shard_map',
      '--max_epochs=3',
      '--tol_on=none',
      '--plots=false',
      '--seed=0',
    ],
    FOUR_CPU_DEVICES,
    1,
  ),
  'train_two_processes': ('train', TWO_PROCESS_ARGS, {}, 2),
  'train_two_processes_stream': (
    'train',
    [
      '--dataset=npy',
      '--data_path={data}/x.npy',
      '--labels_path={data}/y.npy',
      '--stream',
      '--block_rows=64',
      '--batch_size=32',
      '--max_epochs=3',
      '--tol_on=none',
      '--plots=false',
      '--parallel=shard_map',
      '--seed=0',
    ],
    {},
    2,
  ),
  'lr_sweep': (
    'lr_sweep',
    ['--dataset=digits', '--lrs=0.01,0.1,1', '--regs=0,1e-3', '--epochs=3', '--seed=0', '--retrain_best'],
    {},
    1,
  ),
  'lr_sweep_lbfgs': (
    'lr_sweep',
    ['--dataset=breast_cancer', '--loss=logistic', '--optimizer=lbfgs', '--regs=1e-4,1e-3,1e-2', '--seed=0'],
    {},
    1,
  ),
  'search': (
    'search',
    ['--dataset=digits', '--budget=100', '--population=10', '--proposals=5', '--seed=0'],
    {},
    1,
  ),
  'gradcheck': (
    'gradcheck',
    # every loss, every numerical method, plain and bias-trick form; l2 penalty (l1: train_regression)
    ['--loss=all', '--penalty=l2', '--method=all', '--seed=0', '--json_out={workdir}/gradcheck.json'],
    {},
    1,
  ),
  'optimizers': ('optimizers', ['--dataset=digits', '--epochs=2', '--seed=0'], {}, 1),
  'hard_cases': ('hard_cases', ['--epochs=10', '--num_examples=200', '--seed=0'], {}, 1),
  'report': ('report', ['--tiny', '--seed=0'], {}, 1),
}
NO_WORKDIR_FLAG = {'gradcheck'}  # experiments without --workdir (their files are named in the flags)
TIMEOUT_S = 600


def make_data(folder):
  """A 3-class problem in npy files for the streamed cases (rows in random order, fixed seed)."""
  rng = np.random.default_rng(0)
  n, d, c = 480, 5, 3
  y = rng.integers(0, c, n)
  centers = rng.normal(size=(c, d)) * 2.0
  x = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
  os.makedirs(folder, exist_ok=True)
  np.save(os.path.join(folder, 'x.npy'), x)
  np.save(os.path.join(folder, 'y.npy'), y.astype(np.int64))


# ------------------------------------------------------------------------------------------------
# Reading outputs.


class Recorder:
  def __init__(self, repo, tmp):
    self.values = {}
    self.context = {}
    self.excluded = set()
    self.repo = os.path.realpath(repo)
    self.tmp = os.path.realpath(tmp)

  def normalize(self, text):
    """Paths of this run replaced by <TMP> and <REPO>."""
    for path, name in ((self.tmp, '<TMP>'), (self.repo, '<REPO>')):
      text = text.replace(path, name)
    return text

  def put(self, key, value):
    if isinstance(value, str):
      value = self.normalize(value)
    self.values[key] = value

  @staticmethod
  def key_excluded(name):
    name = str(name).lower()
    return (
      name in EXCLUDED_KEYS or name.endswith(EXCLUDED_KEY_SUFFIXES) or name.startswith(EXCLUDED_KEY_PREFIXES)
    )

  def tree(self, prefix, obj, generic):
    """Every leaf of a JSON value; `generic` is the key pattern listed as excluded."""
    if isinstance(obj, dict):
      for k, v in obj.items():
        if self.key_excluded(k):
          self.excluded.add(f'{generic}.{k}')
          continue
        self.tree(f'{prefix}.{k}', v, f'{generic}.{k}')
    elif isinstance(obj, list):
      for i, v in enumerate(obj):
        self.tree(f'{prefix}[{i}]', v, f'{generic}[*]')
    else:
      self.put(prefix, obj)

  def json_file(self, key, path):
    with open(path, encoding='utf-8') as fh:
      self.tree(key + ':$', json.load(fh), key + ':$')

  def jsonl_file(self, key, path):
    with open(path, encoding='utf-8') as fh:
      for i, line in enumerate(fh):
        if line.strip():
          self.tree(f'{key}:[{i}]', json.loads(line), f'{key}:[*]')

  def csv_file(self, key, path):
    with open(path, newline='', encoding='utf-8') as fh:
      rows = list(csv.reader(fh))
    if not rows:
      return
    header = rows[0]
    for name in header:
      if self.key_excluded(name):
        self.excluded.add(f'{key}:[*].{name}')
    for r, row in enumerate(rows[1:]):
      for c, cell in enumerate(row):
        name = header[c] if c < len(header) else f'col{c}'
        if self.key_excluded(name):
          continue
        self.put(f'{key}:[{r}].{name}', parse_cell(cell))

  def npz_file(self, key, path):
    with np.load(path, allow_pickle=False) as z:
      for name in sorted(z.files):
        a = z[name]
        if a.dtype.kind == 'U' and a.ndim == 0:  # a JSON record (checkpoints' `meta`): by its leaves
          try:
            obj = json.loads(str(a))
          except ValueError:
            obj = None
          if isinstance(obj, (dict, list)):
            self.tree(f'{key}:{name}:$', obj, f'{key}:{name}:$')
            continue
        self.array(f'{key}:{name}', a)

  def array(self, key, a):
    a = np.asarray(a)
    entry = {
      'dtype': str(a.dtype),
      'shape': list(a.shape),
      'sha256': hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(),
    }
    flat = a.ravel()
    if a.dtype.kind == 'f':
      entry['values'] = [float(v).hex() for v in flat]
    elif a.dtype.kind in 'iub':
      entry['values'] = [int(v) for v in flat]
    else:
      entry['values'] = [str(v) for v in flat]
    if a.size and a.dtype.kind in 'fiub':
      f = a.astype(np.float64)
      entry['summary'] = {'min': float(f.min()), 'max': float(f.max()), 'mean': float(f.mean())}
    self.values[key] = {'array': entry}

  def text_numbers(self, key, lines):
    """Every number of every line (timing tokens dropped first); the line's shape as context."""
    timing_table = None  # while in a table whose last column is a timing: is it a `| ... |` table
    for i, raw in enumerate(lines):
      line = self.normalize(raw)
      stripped = line.strip()
      if any(re.search(p, stripped) for p in EXCLUDED_LINES):
        self.excluded.add(f'{key}: lines matching {[p for p in EXCLUDED_LINES if re.search(p, stripped)]}')
        continue
      if timing_table is not None and (not stripped or (timing_table and not stripped.startswith('|'))):
        timing_table = None
      columns = [c.strip() for c in re.split(r'\s{2,}|\|', stripped) if c.strip()]
      if columns and columns[-1].lower() in EXCLUDED_COLUMNS and not NUMBER.search(stripped):
        timing_table = stripped.startswith('|')
        self.excluded.add(f'{key}: last column of the rows under "{stripped}"')
      kept = line
      for pattern in TIMING_PATTERNS:
        kept = re.sub(pattern, '<time>', kept)
      if kept != line:
        self.excluded.add(f'{key}: timing tokens ({", ".join(TIMING_PATTERN_NAMES)})')
      numbers = NUMBER.findall(kept)
      if timing_table is not None and numbers:
        numbers = numbers[:-1]
        kept += '  <last number: time>'
      for j, token in enumerate(numbers):
        k = f'{key}:{i}.{j}'
        self.values[k] = parse_number(token)
        self.context[k] = NUMBER.sub('#', kept).strip()[:160]

  def html_file(self, key, path):
    with open(path, encoding='utf-8') as fh:
      html = fh.read()
    html = re.sub(r'<img[^>]*>', '', html)
    html = re.sub(r'<(style|script)[^>]*>.*?</\1>', '', html, flags=re.S)
    # Tables: cell by cell, keyed by table, row and column header.
    tables = re.findall(r'<table[^>]*>(.*?)</table>', html, flags=re.S)
    for t, table in enumerate(tables):
      rows = re.findall(r'<tr[^>]*>(.*?)</tr>', table, flags=re.S)
      header = [text_of(c) for c in re.findall(r'<th[^>]*>(.*?)</th>', rows[0], flags=re.S)] if rows else []
      for h in header:
        if h.lower() in EXCLUDED_COLUMNS:
          self.excluded.add(f'{key}:table[{t}].{h}')
      for r, row in enumerate(rows[1:] if header else rows):
        cells = [text_of(c) for c in re.findall(r'<t[dh][^>]*>(.*?)</t[dh]>', row, flags=re.S)]
        for c, cell in enumerate(cells):
          name = header[c] if c < len(header) else f'col{c}'
          if name.lower() in EXCLUDED_COLUMNS:
            continue
          self.put(f'{key}:table[{t}][{r}].{name}', cell)
    # Text outside tables: numbers block by block.
    rest = re.sub(r'<table[^>]*>.*?</table>', '', html, flags=re.S)
    blocks = [text_of(b) for b in re.split(r'<(?:p|h\d|figcaption|li|br)[^>]*>', rest)]
    self.text_numbers(f'{key}:text', [b for b in blocks if b.strip()])


TIMING_PATTERN_NAMES = ('seconds per epoch {...}', 'N ex/s and other N unit/s', 'N s, ms, min, h')
NUMBER = re.compile(  # 12, -0.5, 1,684 (thousands), 1e-05, 95.5%, .5; not the digits of a name (p0, x2)
  r'(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?%?|(?<![\w.])[-+]?\.\d+'
)


def parse_number(token):
  t = token.replace(',', '').replace('−', '-')
  pct = t.endswith('%')
  t = t.rstrip('%')
  try:
    v = int(t)
  except ValueError:
    v = float(t)
  return f'{v}%' if pct else v


def parse_cell(cell):
  try:
    return int(cell)
  except ValueError:
    pass
  try:
    return float(cell)
  except ValueError:
    return cell


def text_of(fragment):
  import html as html_lib  # pylint: disable=import-outside-toplevel

  return html_lib.unescape(re.sub(r'<[^>]+>', ' ', fragment)).strip()


def read_outputs(rec, case, workdir):
  for root, dirs, files in os.walk(workdir):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, workdir)
      key = f'{case}/{rel}'
      ext = name.rsplit('.', 1)[-1].lower() if '.' in name else ''
      if ext == 'json':
        rec.json_file(key, path)
      elif ext == 'jsonl':
        rec.jsonl_file(key, path)
      elif ext == 'csv':
        rec.csv_file(key, path)
      elif ext == 'npz':
        rec.npz_file(key, path)
      elif ext == 'npy':
        rec.array(f'{key}:array', np.load(path, allow_pickle=False))
      elif ext in ('html', 'htm'):
        rec.html_file(key, path)
      else:  # png and anything else: only that it was written
        rec.values[f'{key}:exists'] = True


# ------------------------------------------------------------------------------------------------
# Running.


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def base_env(repo, tmp):
  env = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(('JAX_', 'XLA_', 'TF_', 'CUDA_', 'PYTHON', 'LINEAR_JAX'))
  }
  env.update(
    PYTHONPATH=repo,  # this tree's code, whatever is installed in the environment
    PYTHONHASHSEED='0',
    JAX_PLATFORMS='cpu',
    MPLBACKEND='Agg',
    XDG_CACHE_HOME=os.path.join(tmp, 'xdg_cache'),  # a fresh compilation cache, never the user's
    TF_CPP_MIN_LOG_LEVEL='2',
  )
  return env


def command_line(case, tmp, i=None):
  experiment, args, _, processes = CASES[case]
  workdir = os.path.join(tmp, 'runs', case)
  subs = {'workdir': workdir, 'data': os.path.join(tmp, 'data')}
  out = [sys.executable, '-m', f'experiments.{experiment}', *(a.format(**subs) for a in args)]
  if experiment not in NO_WORKDIR_FLAG:
    out.append(f'--workdir={workdir}' if processes == 1 else f'--workdir={workdir}/p{i}')
  if processes > 1:
    out += ['--coordinator_address=127.0.0.1:{port}', f'--num_processes={processes}', f'--process_id={i}']
  return workdir, out


def run_case(case, repo, tmp, rec):
  experiment, _, extra_env, processes = CASES[case]
  env = base_env(repo, tmp) | extra_env
  t = time.perf_counter()
  if processes == 1:
    workdir, cmd = command_line(case, tmp)
    os.makedirs(workdir, exist_ok=True)
    p = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    results = [(p.returncode, p.stdout, p.stderr)]
    shown = cmd
  else:
    port = free_port()
    procs = []
    for i in range(processes):
      workdir, cmd = command_line(case, tmp, i)
      cmd = [a.replace('{port}', str(port)) for a in cmd]
      shown = cmd
      procs.append(
        subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      )
    try:
      outs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
      for p in procs:  # never leave a process behind
        if p.poll() is None:
          p.kill()
          p.wait()
    results = [(p.returncode, o, e) for p, (o, e) in zip(procs, outs, strict=True)]
  seconds = time.perf_counter() - t
  for i, (code, stdout, stderr) in enumerate(results):
    tag = '' if processes == 1 else f'/process{i}'
    rec.values[f'{case}{tag}/returncode'] = code
    rec.text_numbers(f'{case}{tag}/stdout', stdout.splitlines())
    if code != 0:
      print(f'  {case}{tag}: exit {code}\n{stderr[-3000:]}', file=sys.stderr)
  read_outputs(rec, case, workdir)
  if processes > 1:  # process i's command, i = 0, 1, ...
    shown = [a.replace('{port}', 'PORT') for a in command_line(case, tmp, '<i>')[1]]
  shown = ' '.join(rec.normalize(a) for a in shown[1:])
  env_shown = ' '.join(f'{k}={v}' for k, v in extra_env.items())
  return {
    'command': (env_shown + ' ' if env_shown else '')
    + 'python '
    + shown
    + (f'  (processes <i> = 0..{processes - 1} at once, PORT a free port)' if processes > 1 else ''),
    'returncodes': [r[0] for r in results],
    'seconds': round(seconds, 1),
  }


def record(args):
  repo = os.path.realpath(args.repo)
  cases = args.cases.split(',') if args.cases else list(CASES)
  tmp = tempfile.mkdtemp(prefix='compare_outputs_')
  start = time.perf_counter()
  try:
    rec = Recorder(repo, tmp)
    make_data(os.path.join(tmp, 'data'))
    for name in ('x.npy', 'y.npy'):  # the streamed cases' input
      with open(os.path.join(tmp, 'data', name), 'rb') as fh:
        rec.values[f'input/{name}:sha256'] = hashlib.sha256(fh.read()).hexdigest()
    check = subprocess.run(
      [
        sys.executable,
        '-c',
        'import linear_jax, experiments, jax, numpy, sys; print(linear_jax.__file__);'
        'print(experiments.__file__); print(sys.version.split()[0], jax.__version__, numpy.__version__)',
      ],
      cwd=repo,
      env=base_env(repo, tmp),
      capture_output=True,
      text=True,
      check=True,
    ).stdout.splitlines()
    environment = dict(zip(('python', 'jax', 'numpy'), check[2].split(), strict=True))
    for f in check[:2]:
      if not os.path.realpath(f).startswith(repo + os.sep):
        sys.exit(f'{f} is imported instead of the code in {repo}')
    info = {}
    for case in cases:
      print(f'{case} ...', end=' ', flush=True, file=sys.stderr)
      info[case] = run_case(case, repo, tmp, rec)
      print(f'{info[case]["seconds"]} s, exit {info[case]["returncodes"]}', file=sys.stderr)
  finally:
    if not args.keep:
      shutil.rmtree(tmp, ignore_errors=True)
    else:
      print(f'outputs kept in {tmp}', file=sys.stderr)
  dropped = {}
  for key in list(rec.values):
    for pattern, why in NONDETERMINISTIC.items():
      if re.search(pattern, key):
        del rec.values[key]
        rec.context.pop(key, None)
        dropped[pattern] = why
  out = {
    'repo': repo,
    'python': sys.executable,
    'environment': environment,  # not compared; `compare` prints it when it differs
    'record_seconds': round(time.perf_counter() - start, 1),
    'cases': info,
    'num_values': count_values(rec.values),
    'num_keys': len(rec.values),
    'excluded': {
      'keys': sorted(EXCLUDED_KEYS),
      'key_suffixes': list(EXCLUDED_KEY_SUFFIXES),
      'key_prefixes': list(EXCLUDED_KEY_PREFIXES),
      'html_columns': sorted(EXCLUDED_COLUMNS),
      'timing_patterns': list(TIMING_PATTERNS),
      'nondeterministic': dropped,
      'met': sorted(rec.excluded),
    },
    'values': dict(sorted(rec.values.items())),
    'context': dict(sorted(rec.context.items())),
  }
  with open(args.out, 'w', encoding='utf-8') as fh:
    json.dump(out, fh, indent=1, ensure_ascii=False)
  print(
    f'{out["num_values"]} values under {out["num_keys"]} keys from {len(cases)} cases in '
    f'{out["record_seconds"]} s -> {args.out}',
    file=sys.stderr,
  )
  failed = [c for c, i in info.items() if any(i['returncodes'])]
  if failed:
    print(f'cases that did not exit 0: {", ".join(failed)}', file=sys.stderr)
  return 0


def count_values(values):
  return sum(len(v['array']['values']) if is_array(v) else 1 for v in values.values())


# ------------------------------------------------------------------------------------------------
# Comparing.


def is_array(v):
  return isinstance(v, dict) and 'array' in v


def as_float(v):
  if isinstance(v, str):
    if v.endswith('%'):
      v = v[:-1]
    try:
      return float.fromhex(v) if 'p' in v.lower() else float(v)
    except ValueError:
      return None
  if isinstance(v, bool) or v is None:
    return None
  return float(v)


def scalar_equal(a, b, rtol):
  if a == b and type(a) is type(b):
    return True
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return True
  if rtol is None:
    return False
  fa, fb = as_float(a), as_float(b)
  if fa is None or fb is None:
    return False
  return fa == fb or (math.isnan(fa) and math.isnan(fb)) or abs(fa - fb) <= rtol * max(abs(fa), abs(fb))


def compare_values(key, a, b, rtol):
  """The differences of one key, as lines."""
  if is_array(a) != is_array(b):
    return [f'{key}: {short(a)} != {short(b)}']
  if not is_array(a):
    return [] if scalar_equal(a, b, rtol) else [f'{key}: {short(a)} != {short(b)}']
  a, b = a['array'], b['array']
  if a['dtype'] != b['dtype'] or a['shape'] != b['shape']:
    return [f'{key}: {a["dtype"]}{a["shape"]} != {b["dtype"]}{b["shape"]}']
  if a['sha256'] == b['sha256'] and rtol is None:
    return []
  out = []
  for i, (x, y) in enumerate(zip(a['values'], b['values'], strict=True)):
    fx, fy = (as_float(x), as_float(y)) if isinstance(x, str) else (x, y)
    if not scalar_equal(fx, fy, rtol):
      out.append(f'{key}[{i}]: {fx!r} != {fy!r}')
  if not out and rtol is None:  # same elements but other bytes (e.g. -0.0 against 0.0)
    out.append(f'{key}: sha256 differs')
  return out


def short(v):
  s = repr(v)
  return s if len(s) < 120 else s[:117] + '...'


def compare(args):
  with open(args.before, encoding='utf-8') as fh:
    a = json.load(fh)
  with open(args.after, encoding='utf-8') as fh:
    b = json.load(fh)
  va, vb = a['values'], b['values']
  missing = sorted(set(va) - set(vb))
  added = sorted(set(vb) - set(va))
  diffs = []
  for key in sorted(set(va) & set(vb)):
    lines = compare_values(key, va[key], vb[key], args.rtol)
    if lines:
      context = a.get('context', {}).get(key)
      if context:
        lines[0] += f'    [{context}]'
      diffs.extend(lines)
  if a.get('environment') != b.get('environment'):
    print(f'note: other environment: {a.get("environment")} before, {b.get("environment")} after')
  for name, f in (('before', a), ('after', b)):
    bad = {c: i['returncodes'] for c, i in f.get('cases', {}).items() if any(i['returncodes'])}
    if bad:
      print(f'{name}: cases that did not exit 0: {bad}')
  if a.get('excluded', {}).get('met') != b.get('excluded', {}).get('met'):
    print('note: the excluded keys met differ:')
    ea, eb = set(a['excluded'].get('met', [])), set(b['excluded'].get('met', []))
    for k in sorted(ea - eb):
      print(f'  only before: {k}')
    for k in sorted(eb - ea):
      print(f'  only after:  {k}')
  print(
    f'{len(va)} keys before ({a.get("num_values")} values), {len(vb)} after ({b.get("num_values")}); '
    f'{len(missing)} missing, {len(added)} added, {len(diffs)} differing values'
    + (f' (rtol {args.rtol})' if args.rtol is not None else ' (exact)')
  )
  for k in missing:
    print(f'missing: {k}')
  for k in added:
    print(f'added:   {k}')
  for line in diffs[: args.max_diffs]:
    print(f'differs: {line}')
  if len(diffs) > args.max_diffs:
    print(f'... and {len(diffs) - args.max_diffs} more differing values')
  equal = not (missing or added or diffs)
  print('ALL EQUAL' if equal else 'DIFFERENT')
  return 0 if equal else 1


def main():
  parser = argparse.ArgumentParser(
    description=__doc__.split('\n\n')[1], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  sub = parser.add_subparsers(dest='what', required=True)
  r = sub.add_parser('record', help='run every case against --repo and record every number')
  r.add_argument(
    '--repo', required=True, help='root of the tree to run (cwd and PYTHONPATH of every command)'
  )
  r.add_argument('--out', required=True, help='JSON file to write')
  r.add_argument('--cases', default='', help=f'comma-separated subset of: {",".join(CASES)}')
  r.add_argument('--keep', action='store_true', help='keep the temporary workdirs and print where')
  c = sub.add_parser('compare', help='compare two recordings; exit 1 if any value differs')
  c.add_argument('before')
  c.add_argument('after')
  c.add_argument('--rtol', type=float, default=None, help='relative tolerance (default: exact equality)')
  c.add_argument('--max_diffs', type=int, default=50, help='differing values listed (default 50)')
  args = parser.parse_args()
  sys.exit(record(args) if args.what == 'record' else compare(args))


if __name__ == '__main__':
  main()
