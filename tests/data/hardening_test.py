"""Hardening: fuzzed loaders, a SIGKILL during a checkpoint write, and no unsafe deserialization."""

import gzip
import json
import os
import pathlib
import pickle
import re
import signal
import struct
import subprocess
import sys
import time

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from linear_jax.data import datasets as data

ROOT = pathlib.Path(__file__).resolve().parents[2]
FUZZ = settings(
  deadline=None,
  derandomize=True,
  max_examples=60,
  suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _valid_files(folder):
  """One small valid file of each format, as bytes: the seeds the fuzzer truncates and flips."""
  rng = np.random.default_rng(0)
  cifar_bin = np.concatenate([rng.integers(0, 10, (3, 1)), rng.integers(0, 256, (3, 3072))], 1).astype(
    np.uint8
  )
  cifar_py = pickle.dumps({b'data': rng.integers(0, 256, (2, 3072)).astype(np.uint8), b'labels': [1, 2]})
  idx_images = struct.pack('>IIII', 2051, 2, 2, 2) + bytes(range(8))
  idx_labels = struct.pack('>II', 2049, 2) + bytes([3, 4])
  npz_path = folder / 'seed.npz'
  np.savez_compressed(npz_path, x=rng.normal(size=(3, 2)), y=np.array([0, 1, 1]))
  return {
    'cifar_bin': cifar_bin.tobytes(),
    'cifar_py': cifar_py,
    'idx_images': idx_images,
    'idx_labels': idx_labels,
    'idx_images.gz': gzip.compress(idx_images),
    'npz': npz_path.read_bytes(),
    'csv': b'a,b,label\n1,2,0\n3.5,4,1\n',
  }


def _load(kind, path):
  if kind == 'cifar_bin':
    return data.read_cifar_bin(path)
  if kind == 'cifar_py':
    return data.read_cifar_py(path)
  if kind.startswith('idx_images'):
    return data.read_idx(path, data.IDX_IMAGES)
  if kind == 'idx_labels':
    return data.read_idx(path, data.IDX_LABELS)
  if kind == 'npz':
    return data.load_npz(path)
  return data.load_csv(path, 'label')


KINDS = ['cifar_bin', 'cifar_py', 'idx_images', 'idx_labels', 'idx_images.gz', 'npz', 'csv']


@FUZZ
@pytest.mark.filterwarnings('ignore::linear_jax.data.readers.ReadNotice')  # what was read, no error
@given(
  kind=st.sampled_from(KINDS),
  cut=st.floats(0.0, 1.0),
  flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4),
  junk=st.binary(max_size=64),
  mode=st.sampled_from(['truncate', 'flip', 'random', 'append']),
)
def test_loaders_only_raise_clear_value_errors(tmp_path_factory, kind, cut, flips, junk, mode):
  folder = tmp_path_factory.mktemp('fuzz')
  seed = _valid_files(folder)[kind]
  if mode == 'truncate':
    blob = seed[: int(cut * len(seed))]
  elif mode == 'flip':
    b = bytearray(seed)
    for where, value in flips:
      b[min(int(where * len(b)), len(b) - 1)] = value
    blob = bytes(b)
  elif mode == 'random':
    blob = junk
  else:
    blob = seed + junk
  path = str(folder / (kind + ('' if '.' in kind else '.bin')))
  with open(path, 'wb') as f:
    f.write(blob)
  t = time.perf_counter()
  try:
    out = _load(kind, path)
  except ValueError as e:
    assert path in str(e), str(e)  # the message names the file
  else:
    # Accepted input must be well formed: arrays of the promised shapes, no NaN.
    x = out[0] if isinstance(out, tuple) else out.x
    assert isinstance(x, np.ndarray) and np.all(np.isfinite(x))
  assert time.perf_counter() - t < 10  # no hang


def test_sigkill_during_checkpoint_write_loses_nothing(tmp_path):
  args = [
    sys.executable,
    '-m',
    'experiments.train',
    '--epochs=8',
    '--batch_size=32',
    '--plots=false',
    '--quiet',
    '--optimizer=adam',
    '--learning_rate=0.01',
    '--checkpoint_every=1',
  ]
  whole = subprocess.run(
    [*args, f'--workdir={tmp_path}/whole'], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
  )
  assert whole.returncode == 0, whole.stderr
  work, marker = tmp_path / 'crash', tmp_path / 'paused'
  env = {**os.environ, 'LINEAR_JAX_CHECKPOINT_PAUSE': f'4:{marker}'}  # the 4th save pauses mid-write
  proc = subprocess.Popen(
    [*args, f'--workdir={work}'], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  try:
    deadline = time.time() + 120
    while not marker.exists():
      assert proc.poll() is None and time.time() < deadline, 'training ended before the pause'
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert any(p.name.startswith('.tmp-') for p in work.iterdir())  # the torn write is there...
  meta = json.loads(str(np.load(work / 'checkpoint.npz', allow_pickle=False)['meta']))
  assert meta['epoch'] == 3  # ...and the previous checkpoint is intact
  resumed = subprocess.run(
    [*args, f'--workdir={work}', '--resume'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert resumed.returncode == 0, resumed.stderr
  a, b = np.load(tmp_path / 'whole' / 'params.npz'), np.load(work / 'params.npz')
  np.testing.assert_array_equal(a['W'], b['W'])
  np.testing.assert_array_equal(a['b'], b['b'])
  assert not any(p.name.startswith('.tmp-') for p in work.iterdir())  # cleaned on resume


def _sources():
  for folder in ('linear_jax', 'experiments'):
    for path in (ROOT / folder).rglob('*.py'):
      yield path, path.read_text()


def test_no_unsafe_deserialization_or_eval():
  for path, text in _sources():
    code = '\n'.join(line.split('#')[0] for line in text.splitlines())
    assert not re.search(r'\b(eval|exec)\(', code), path
    assert not re.search(r'pickle\.loads?\(', code), path  # only the restricted CIFAR unpickler
    for call in re.findall(r'np\.load\(([^)]*)\)', code):
      assert 'allow_pickle=False' in call, (path, call)
    assert 'tarfile' not in code and 'extractall' not in code, path  # archives are not accepted


def test_readme_bad_input_table_rows_are_tested():
  """Every test the bad-input table of docs/bad-input.md names is defined under tests/."""
  page = (ROOT / 'docs' / 'bad-input.md').read_text()
  table = '\n'.join(line for line in page.splitlines() if line.startswith('|'))
  named = re.findall(r'`(test_\w+)`', table)
  assert len(named) >= 12
  tests = '\n'.join(p.read_text() for p in (ROOT / 'tests').rglob('*_test.py'))
  for name in named:
    assert f'def {name}(' in tests, f'docs/bad-input.md names {name}, which no test defines'
