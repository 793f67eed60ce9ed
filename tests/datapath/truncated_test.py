"""A streamed file truncated while it is read: one line naming it, never a SIGBUS (a killed process).

Every test here would kill the test process with SIGBUS if a read of the
truncated map went unchecked, so each asserts the `ValueError` before any
page past the file's new end is touched.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from linear_jax.data import chunks
from linear_jax.datapath import transfer
from linear_jax.optim import config
from linear_jax.runs import experiment
from linear_jax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRUNCATED = r'x\.npy: the file is now [\d,]+ bytes, shorter than the [\d,]+ it had when it was opened'


def _files(tmp_path, n=400, d=6):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', y)
  return experiment.DataConfig(
    dataset='npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy')
  )


def _truncate(path, keep=0.5):
  os.truncate(path, int(os.path.getsize(path) * keep))


def test_check_mapped_names_a_shrunk_npy_and_npz_and_passes_memory_and_a_deleted_file(tmp_path):
  np.save(tmp_path / 'x.npy', np.ones((2000, 4), np.float32))
  np.savez(tmp_path / 'd.npz', x=np.ones((2000, 4), np.float32))
  a = np.load(tmp_path / 'x.npy', mmap_mode='r')
  b = np.load(tmp_path / 'd.npz')
  from linear_jax.data import npyfile  # pylint: disable=import-outside-toplevel

  member = npyfile.npz_member(str(tmp_path / 'd.npz'), b, 'x')
  for m in (a, member):
    chunks.check_mapped(m[10:20])  # whole: nothing to say
  chunks.check_mapped(np.ones(3))
  _truncate(tmp_path / 'x.npy', 0.99)  # one row short is enough
  _truncate(tmp_path / 'd.npz', 0.5)
  with pytest.raises(ValueError, match=TRUNCATED):
    chunks.check_mapped(np.asarray(a[:5]))  # a plain view of the map is still the map
  with pytest.raises(ValueError, match=r'd\.npz: the file is now'):
    transfer.read(member, 0, 10, np.float32)
  np.save(tmp_path / 'z.npy', np.ones((100, 4), np.float32))
  z = np.load(tmp_path / 'z.npy', mmap_mode='r')
  os.remove(tmp_path / 'z.npy')  # a removed file's pages stay readable while mapped
  chunks.check_mapped(z)
  assert float(transfer.read(z, 0, 100, np.float32).sum()) == 400.0


def test_a_stream_truncated_while_training_is_one_line_and_the_checkpoint_stays(tmp_path):
  ds = experiment.load_dataset(_files(tmp_path), stream=True)
  assert isinstance(ds.x_train, np.memmap)
  cfg = config.TrainConfig(stream=True, block_rows=100, batch_size=100, epochs=3)
  work = tmp_path / 'work'
  work.mkdir()
  saved = {}

  def truncate_after_the_first_epoch(metrics):
    if metrics['epoch'] == 1:
      saved['checkpoint'] = (work / 'checkpoint.npz').read_bytes()
      _truncate(tmp_path / 'x.npy')

  with pytest.raises(ValueError, match=TRUNCATED) as e:
    train.fit(cfg, ds, workdir=str(work), on_epoch=truncate_after_the_first_epoch)
  assert '\n' not in str(e.value)
  assert (work / 'checkpoint.npz').read_bytes() == saved['checkpoint']  # the epoch before, intact


def test_a_stream_truncated_before_training_is_refused_before_any_epoch(tmp_path):
  ds = experiment.load_dataset(_files(tmp_path), stream=True)
  _truncate(tmp_path / 'x.npy', 0.9)
  epochs = []
  with pytest.raises(ValueError, match=TRUNCATED):
    train.fit(config.TrainConfig(stream=True, block_rows=100, epochs=2), ds, on_epoch=epochs.append)
  assert epochs == []


def test_train_command_on_a_truncated_stream_exits_with_one_line(tmp_path):
  """The command line: `Error: ….npy: the file is now …`, exit 1, no "Fatal Python error"."""
  _files(tmp_path, n=3000, d=20)
  script = (
    'import os, sys\n'
    'from linear_jax.runs import experiment\n'
    'path = sys.argv[1]\n'
    'real = experiment.load_dataset\n'
    'def load(*a, **k):\n'
    '  ds = real(*a, **k)\n'
    '  os.truncate(path, 4096)\n'  # the file shrinks once the run has mapped it
    '  return ds\n'
    'experiment.load_dataset = load\n'
    "sys.argv = ['train'] + sys.argv[2:]\n"
    'import runpy\n'
    "runpy.run_module('experiments.train', run_name='__main__')\n"
  )
  x = str(tmp_path / 'x.npy')
  res = subprocess.run(
    [sys.executable, '-c', script, x, '--dataset=npy', f'--data_path={x}',
     f'--labels_path={tmp_path / "y.npy"}', '--stream', '--epochs=2', '--learning_rate=0.1',
     f'--workdir={tmp_path / "work"}', '--quiet'],
    check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert res.returncode == 1, res.stderr[-2000:]
  assert 'Fatal Python error' not in res.stderr and 'Traceback' not in res.stderr, res.stderr[-2000:]
  assert res.stderr.strip().splitlines()[-1].startswith(f'Error: {x}: the file is now 4,096 bytes'), (
    res.stderr
  )
