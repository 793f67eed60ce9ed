"""A checkpoint names the data it was trained on; a resume on other data is refused, saying what differs."""

import dataclasses
import hashlib
import importlib.util

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.training import fingerprint
from linear_jax.training import train


def _prepared(data_seed=0, **options):
  kw = {'val_fraction': 0.2, 'test_fraction': 0.2, 'seed': 0} | options
  return data.prepare(data.blobs(60, 3, 3, seed=data_seed), 'blobs', **kw)


CASES = {
  'another dataset of the same shape': (
    _prepared(data_seed=1),
    r"the train split's features \(other values\)",
  ),
  '--val_fraction': (
    _prepared(val_fraction=0.3),
    r"the train split's features \(shape \[36, 3\], now \[30, 3\]\)",
  ),
  '--test_fraction': (_prepared(test_fraction=0.1), r'shape \[36, 3\], now \[42, 3\]'),
  '--preprocess': (_prepared(preprocess='center'), r'the preprocessing \(scale\)'),
  '--class_weight': (
    _prepared(class_weight='balanced'),
    r"the train split's sample weights \(none, now some\)",
  ),
  '--seed of the split': (_prepared(seed=3), r"the train split's features \(other values\)"),
}


@pytest.mark.parametrize('case', list(CASES))
def test_resume_on_other_data_is_refused_saying_what_differs(tmp_path, case):
  ds = _prepared()
  cfg = config.TrainConfig(epochs=3, batch_size=16)

  def stop_after_1(metrics):
    if metrics['epoch'] == 1:
      raise KeyboardInterrupt

  first = train.fit(cfg, ds, workdir=str(tmp_path), on_epoch=stop_after_1)
  other, why = CASES[case]
  with pytest.raises(ValueError, match=r'trained on other data than this run.s \(.*' + why):
    train.fit(cfg, other, workdir=str(tmp_path), resume=True)
  again = train.fit(cfg, ds, workdir=str(tmp_path), resume=True)
  assert again.resumed_from == len(first.history) == 1  # the same data still resumes


def test_fingerprint_differs_with_every_part_and_samples_large_arrays(monkeypatch):
  ds = _prepared()
  base = fingerprint.of(ds)
  assert fingerprint.differences(base, fingerprint.of(_prepared())) == []
  y = np.array(ds.y_train)
  y[0] = (y[0] + 1) % 3
  assert fingerprint.differences(base, fingerprint.of(dataclasses.replace(ds, y_train=y))) == [
    "the train split's targets (other values)"
  ]
  assert fingerprint.differences(None, base)[0].startswith('the data (the checkpoint names none')
  big = np.arange(4 * 1024 * 1024, dtype=np.float64).reshape(-1, 4)  # 128 MiB: sampled
  monkeypatch.setattr(fingerprint, 'FULL_BYTES', 1 << 20)
  changed = big.copy()
  changed[0, 0] = -1.0  # the first block is always sampled
  assert fingerprint.crc(big) != fingerprint.crc(changed)
  assert fingerprint.crc(big) == fingerprint.crc(big.copy())


LOSS_FILE = """import jax
import jax.numpy as jnp
import linear_jax as lj

SCALE = 1.0


def value(scores, labels):
  correct = jnp.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
  return SCALE * (jax.nn.logsumexp(scores, axis=1) - correct)


LOSS = lj.Loss(value, 'class')
"""


def test_a_resume_after_the_loss_file_changed_is_refused(tmp_path, monkeypatch):
  """A checkpoint held `--loss=FILE.py:LOSS` as text only: the file edited (the loss times 100), a
  resume went on with another objective in the same history. Train, sweep and search checkpoints now
  hold the SHA-256 of the file as the run loaded it: an edit during the run does not change it."""
  from linear_jax.maths import loss_files  # pylint: disable=import-outside-toplevel
  from linear_jax.runs import search_run  # pylint: disable=import-outside-toplevel
  from linear_jax.tuning import sweep_state  # pylint: disable=import-outside-toplevel

  path = tmp_path / 'scaled.py'
  path.write_text(LOSS_FILE)
  ds = _prepared()
  cfg = config.TrainConfig(loss=f'{path}:LOSS', grad='autodiff', epochs=3, batch_size=16)

  def stop_after_1(metrics):
    if metrics['epoch'] == 1:
      raise KeyboardInterrupt

  work = tmp_path / 'w'
  work.mkdir()
  train.fit(cfg, ds, workdir=str(work), on_epoch=stop_after_1)
  before = (sweep_state.identity(cfg, ds, [], 1), search_run.identity({}, [], cfg.loss))
  path.write_text(LOSS_FILE.replace('SCALE = 1.0', 'SCALE = 100.0'))
  assert loss_files.contents_digest(cfg.loss) == hashlib.sha256(LOSS_FILE.encode()).hexdigest()  # as loaded
  monkeypatch.delitem(loss_files._LOADED, cfg.loss)  # noqa: SLF001 - as a new process: the file as it is
  with pytest.raises(
    ValueError, match=r'written with another version of the loss file of --loss=.*scaled.py:LOSS'
  ):
    train.fit(cfg, ds, workdir=str(work), resume=True)
  after = (sweep_state.identity(cfg, ds, [], 1), search_run.identity({}, [], cfg.loss))
  assert sweep_state.differences(before[0], after[0]) == ["the loss file's contents"]
  assert [k for k in after[1] if before[1][k] != after[1][k]] == ['loss_file_sha256']
  path.write_text(LOSS_FILE)  # restored: the same contents resume
  assert train.fit(cfg, ds, workdir=str(work), resume=True).resumed_from == 1
  assert search_run.identity({}, [], 'softmax')['loss_file_sha256'] is None  # a built-in has no file
  module = 'linear_jax.maths.regression'  # a package.module:NAME loss: the module's file
  with open(importlib.util.find_spec(module).origin, 'rb') as f:
    assert loss_files.contents_digest(f'{module}:L2') == hashlib.sha256(f.read()).hexdigest()
