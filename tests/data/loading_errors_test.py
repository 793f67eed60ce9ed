"""Bad files and data flags: each refused at load time, naming the file (or flag) and what is wrong."""

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.data.build import from_arrays
from linear_jax.optim import config
from linear_jax.runs import experiment
from linear_jax.training import train

ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def _files(tmp_path, y, x=None, name='y.npy'):
  """`(x.npy, labels)` written to `tmp_path`: 40 rows of 3 float32 features by default."""
  x = np.random.default_rng(0).standard_normal((len(y), 3)).astype(np.float32) if x is None else x
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / name, y)
  return str(tmp_path / 'x.npy'), str(tmp_path / name)


def _config(x_path, y_path, **kw):
  return experiment.DataConfig(dataset='npy', data_path=x_path, labels_path=y_path, **kw)


def test_labels_that_would_make_vast_class_counts_are_refused(tmp_path):
  """A stray label of 10^9 would make a billion classes and exhaust memory after the run has started."""
  y = np.arange(40) % 3
  labels = y.copy()
  labels[5] = 10**9
  x_path, y_path = _files(tmp_path, labels, name='big.npy')
  with pytest.raises(
    ValueError, match=r'big.npy: label 1000000000 at index 5 would make 1,000,000,001 classes'
  ):
    data.load('npy', data_path=x_path, labels_path=y_path)
  labels = y.astype(np.uint64)
  labels[5] = 2**64 - 1
  x_path, y_path = _files(tmp_path, labels, name='big.npy')
  with pytest.raises(ValueError, match=r'big.npy: label 18446744073709551615 at index 5 is too large'):
    data.load('npy', data_path=x_path, labels_path=y_path)
  with pytest.raises(
    ValueError, match=r'arrays: label 5000 at index 0 would make 5,001 classes .* only 3 distinct'
  ):
    from_arrays(np.ones((3, 2)), np.array([5000, 0, 1]))
  # Many classes, every one (or most) present, are what labels 0..C-1 are for; so is a num_classes given.
  assert from_arrays(np.ones((3000, 2)), np.arange(3000)).num_classes == 3000
  assert from_arrays(np.ones((1500, 2)), np.arange(1500) * 2).num_classes == 2999
  assert from_arrays(np.ones((3, 2)), np.array([1999, 0, 1]), num_classes=2000).num_classes == 2000
  # A small test file of a many-class training file holds few of its labels, and is held to the training ones.
  many = np.arange(4000) % 2000
  np.savez(tmp_path / 'train.npz', x=np.ones((4000, 2)), y=many)
  np.savez(tmp_path / 'test.npz', x=np.ones((100, 2)), y=many[-100:])
  raw = data.load('npz', data_path=str(tmp_path / 'train.npz'), test_path=str(tmp_path / 'test.npz'))
  assert raw.num_classes == 2000 and raw.test[1].max() == 1999


def test_data_flags_the_dataset_does_not_read_are_refused(tmp_path):
  """`--data_path=d.npz` without `--dataset=npz` trained on the default digits without a word."""
  cases = {
    r'--data_path=d.npz is read only by --dataset=npz/npy/csv; --dataset=digits \(the default\) does not '
    r'read it\. Name the dataset that does \(--dataset=npz, say\), or drop --data_path\.': dict(
      data_path='d.npz'
    ),
    r'--data_dir=/data is read only by --dataset=cifar10/mnist; --dataset=npz does': dict(
      dataset='npz', data_path='d.npz', data_dir='/data'
    ),
    r'--num_classes=5 is read only by --dataset=blobs; --dataset=npz': dict(
      dataset='npz', data_path='d.npz', num_classes=5
    ),
    r'--delimiter=; is read only by --dataset=csv': dict(dataset='npy', data_path='x.npy', delimiter=';'),
    r'--target_column=label is read only by --dataset=csv': dict(
      dataset='npz', data_path='d.npz', target_column='label'
    ),
    r'--num_features=5 is read only by --dataset=blobs/linreg; --dataset=binary2d': dict(
      dataset='binary2d', num_features=5
    ),
  }
  for message, fields in cases.items():
    with pytest.raises(ValueError, match=message):
      experiment.DataConfig(**fields).check_read()
  experiment.DataConfig(dataset='npz', data_path='d.npz', target_column=-1).check_read()  # the default
  np.savez(tmp_path / 'd.npz', x=np.ones((4, 3)), y=np.arange(4) % 2)
  with pytest.raises(ValueError, match=r'--data_path=.*d.npz is read only by'):
    experiment.load_dataset(experiment.DataConfig(data_path=str(tmp_path / 'd.npz')))
  # What each dataset reads passes.
  experiment.DataConfig(dataset='blobs', num_examples=50, num_features=4, num_classes=5).check_read()
  experiment.DataConfig(dataset='csv', data_path='t.csv', delimiter=';', target_column='label').check_read()
  experiment.DataConfig(dataset='cifar10', data_dir='/data').check_read()
  # From the command line: one line, before any work.
  res = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.train',
      f'--data_path={tmp_path / "d.npz"}',
      f'--workdir={tmp_path / "w"}',
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert res.returncode == 1 and re.search(r'--data_path=.*is read only by --dataset=npz/npy/csv', res.stderr)
  assert not (tmp_path / 'w' / 'summary.json').exists()


def test_whole_number_targets_are_real_numbers_for_a_regression_loss(tmp_path):
  """Counts or prices in whole numbers were read as class labels, and a regression loss was refused."""
  rng = np.random.default_rng(1)
  x = rng.standard_normal((60, 3)).astype(np.float32)
  t = np.round(x @ np.array([30.0, -20.0, 10.0]) + 200)  # whole numbers
  x_path, y_path = _files(tmp_path, t, x=x)
  cfg = _config(x_path, y_path, test_fraction=0.25)
  real = experiment.load_dataset(cfg, targets='real')
  assert real.kind == 'real' and real.y_train.dtype == np.float32 and real.num_classes is None
  fit = train.fit(config.TrainConfig(loss='l2', batch_size=0, epochs=200, learning_rate=0.5), real)
  assert fit.history[-1]['val_mse'] < 5.0  # it learned the linear map, not 200-odd classes
  assert experiment.load_dataset(cfg).kind == 'class'  # without a regression loss, whole numbers are labels
  # A test file's whole numbers are read as the training targets are, whatever the loss.
  np.save(tmp_path / 'r.npy', t + 0.5)
  np.save(tmp_path / 'xt.npy', x[:10])
  np.save(tmp_path / 'tt.npy', t[:10])
  held_out = dataclasses.replace(
    _config(x_path, str(tmp_path / 'r.npy')),
    test_path=str(tmp_path / 'xt.npy'),
    test_labels_path=str(tmp_path / 'tt.npy'),
  )
  ds = experiment.load_dataset(held_out)
  assert ds.kind == 'real'
  # Real targets are standardized with the features; in their own units they are the file's.
  np.testing.assert_allclose(ds.y_test * ds.target_scale + ds.target_shift, t[:10], rtol=1e-6)
  np.savez(tmp_path / 'd.npz', x=x, y=t + 0.5, x_test=x[:10], y_test=t[:10] - 250)  # negative whole numbers
  ds = experiment.load_dataset(experiment.DataConfig(dataset='npz', data_path=str(tmp_path / 'd.npz')))
  assert ds.kind == 'real' and ds.y_test.min() < 0
  # From Python: from_arrays(..., real_targets=True).
  assert from_arrays(x, t).kind == 'class'
  raw = from_arrays(x, t, real_targets=True, test=(x[:10], t[:10]))
  assert raw.kind == 'real' and raw.num_classes is None and raw.test[1].dtype == np.float64


def test_real_targets_for_a_classification_loss_name_the_file_and_the_value(tmp_path):
  y = (np.arange(40) % 3).astype(np.float64)
  y[7] = 1.5
  x_path, y_path = _files(tmp_path, y, name='labels.npy')
  with pytest.raises(
    ValueError, match=r'labels.npy: a classification loss needs integer class labels, got 1.5 at index 7'
  ):
    experiment.load_dataset(_config(x_path, y_path), targets='class')
  # One-hot rows [N, 3] were called 'real-valued targets'.
  onehot = tmp_path / 'onehot.npz'
  np.savez(onehot, x=np.random.default_rng(0).normal(size=(40, 2)), y=np.eye(3)[np.arange(40) % 3])
  with pytest.raises(
    ValueError, match=r'onehot\.npz: the targets are one-hot rows \[40, 3\], .*save y\.argmax'
  ):
    experiment.load_dataset(experiment.DataConfig(dataset='npz', data_path=str(onehot)), targets='class')
  np.savez(onehot, x=np.zeros((40, 2)), y=np.eye(3, dtype=int)[np.arange(40) % 3])  # integer one-hot rows
  with pytest.raises(ValueError, match=r'got shape \(40, 3\) \(one-hot rows: the labels are their argmax'):
    experiment.load_dataset(experiment.DataConfig(dataset='npz', data_path=str(onehot)), targets='class')
  # A bundled regression set in whole numbers is left to the loss check, which says what the targets are.
  diabetes = experiment.load_dataset(experiment.DataConfig(dataset='diabetes'), targets='class')
  with pytest.raises(ValueError, match=r'--loss=softmax does not fit --dataset=diabetes: it has real-valued'):
    train.check_fit(config.TrainConfig(loss='softmax'), diabetes)


def test_features_targets_and_weights_of_another_kind_of_number_are_refused(tmp_path):
  y = np.arange(40) % 3
  x_path, y_path = _files(tmp_path, y, x=np.zeros((40, 3), 'timedelta64[D]'))
  with pytest.raises(ValueError, match=r'x.npy: x must be real numbers, got dtype timedelta64\[D\]'):
    data.load('npy', data_path=x_path, labels_path=y_path)
  x_path, y_path = _files(tmp_path, y.astype(np.complex64))
  with pytest.raises(
    ValueError, match=r'y.npy: targets must be real numbers or text labels, got dtype complex64'
  ):
    data.load('npy', data_path=x_path, labels_path=y_path)
  for w, dtype in (
    (np.ones(40, np.complex64), 'complex64'),
    (np.array(['1'] * 40), '<U1'),
    (np.ones(40, bool), 'bool'),
  ):
    np.savez(tmp_path / 'w.npz', x=np.ones((40, 3)), y=y, w=w)
    with pytest.raises(ValueError, match=rf'w.npz: sample weights must be real numbers, got dtype {dtype}'):
      data.load('npz', data_path=str(tmp_path / 'w.npz'))


def test_files_with_no_rows_are_refused_naming_the_file(tmp_path):
  x_path, y_path = _files(tmp_path, np.zeros(0, np.int64), x=np.zeros((0, 5), np.float32))
  with pytest.raises(ValueError, match=r'x.npy: x has no rows: shape \(0, 5\)'):
    data.load('npy', data_path=x_path, labels_path=y_path)
  np.savez(
    tmp_path / 'd.npz', x=np.ones((4, 3)), y=np.arange(4) % 2, x_test=np.ones((0, 3)), y_test=np.zeros(0)
  )
  with pytest.raises(ValueError, match=r'd.npz \(x_test\): x has no rows'):
    data.load('npz', data_path=str(tmp_path / 'd.npz'))


def test_sample_weights_that_overflow_or_vanish_in_the_training_dtype_are_refused(tmp_path):
  x, y = np.ones((40, 3)), np.arange(40) % 2
  w = np.ones(40)
  w[3] = 1e300
  np.savez(tmp_path / 'huge.npz', x=x, y=y, w=w)
  cfg = experiment.DataConfig(
    dataset='npz', data_path=str(tmp_path / 'huge.npz'), val_fraction=0.0, test_fraction=0.0
  )
  with pytest.raises(
    ValueError, match=r'huge.npz: sample weight 1e\+300 at row 3 overflows float32, the training dtype'
  ):
    experiment.load_dataset(cfg)
  np.savez(tmp_path / 'tiny.npz', x=x, y=y, w=np.full(40, 1e-300))
  with pytest.raises(
    ValueError, match=r'tiny.npz: the sample weights of the train split \(the largest 1e-300\) all round to 0'
  ):
    experiment.load_dataset(dataclasses.replace(cfg, data_path=str(tmp_path / 'tiny.npz')))


def test_npz_arrays_that_would_go_unread_are_refused(tmp_path):
  x, y = np.ones((4, 3)), np.arange(4) % 2
  np.savez(tmp_path / 'named.npz', x=x, y=y, weights=np.ones(4))
  with pytest.raises(
    ValueError, match=r'named.npz: holds array\(s\) weights, which linear_jax does not read; it reads x, y, w'
  ):
    data.load('npz', data_path=str(tmp_path / 'named.npz'))
  np.savez(tmp_path / 'lone.npz', x=x, y=y, w_test=np.ones(2))
  with pytest.raises(ValueError, match=r'lone.npz: has w_test but no test split \(x_test, y_test\)'):
    data.load('npz', data_path=str(tmp_path / 'lone.npz'))


def test_label_errors_name_the_labels_file(tmp_path):
  x_path, y_path = _files(tmp_path, (np.arange(40) % 2)[:, None], name='column.npy')
  with pytest.raises(ValueError, match=r'column.npy: labels must be \[N\], got shape \(40, 1\)'):
    data.load('npy', data_path=x_path, labels_path=y_path)
  t = np.linspace(0.5, 2.5, 40)
  t[9] = np.nan
  x_path, y_path = _files(tmp_path, t, name='nan.npy')
  with pytest.raises(ValueError, match=r'nan.npy: non-finite target at index 9'):
    data.load('npy', data_path=x_path, labels_path=y_path)
  # A test file's labels are compared with the training labels: both labels files are named.
  x_path, y_path = _files(tmp_path, np.arange(40) % 2)
  np.save(tmp_path / 'xt.npy', np.ones((4, 3), np.float32))
  np.save(tmp_path / 'yt.npy', np.array([0, 1, 7, 1]))
  with pytest.raises(ValueError, match=r'yt.npy: label 7 does not occur in the training labels of .*y.npy'):
    data.load(
      'npy',
      data_path=x_path,
      labels_path=y_path,
      test_path=str(tmp_path / 'xt.npy'),
      test_labels_path=str(tmp_path / 'yt.npy'),
    )


def test_a_binary_loss_on_labels_other_than_0_and_1_names_them(tmp_path):
  x_path, y_path = _files(tmp_path, 1 + np.arange(40) % 2)
  ds = experiment.load_dataset(_config(x_path, y_path))
  with pytest.raises(
    ValueError, match=r'it has labels 1 and 2 \(3 classes, numbered from 0\); a binary loss needs 0'
  ):
    train.check_fit(config.TrainConfig(loss='hinge'), ds)
  # Three labels over the splits (the third one only outside training): the count of classes says it.
  ds = dataclasses.replace(ds, y_train=ds.y_train - 1, y_test=np.full(len(ds.y_test), 2, np.int32))
  with pytest.raises(ValueError, match=r"it has 3 classes; a loss with 'binary' targets needs 2"):
    train.check_fit(config.TrainConfig(loss='hinge'), ds)


def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path):
  """`/dev/zero` was read until memory ran out; a pipe into an npz would block. A csv may come from a pipe."""
  (tmp_path / 'folder.npz').mkdir()
  with pytest.raises(ValueError, match=r'folder.npz: is a directory; --data_path names a file'):
    data.load('npz', data_path=str(tmp_path / 'folder.npz'))
  os.mkfifo(tmp_path / 'pipe.npz')
  with pytest.raises(ValueError, match=r'pipe.npz: a pipe, but an npy or npz file is read in place'):
    data.load('npz', data_path=str(tmp_path / 'pipe.npz'))
  np.save(tmp_path / 'x.npy', np.ones((4, 3)))
  with pytest.raises(
    ValueError, match=r'/dev/zero: not a regular file \(a device\); --labels_path names a file'
  ):
    data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path='/dev/zero')
  with pytest.raises(
    ValueError, match=r'/dev/zero: not a regular file \(a device\); --data_path names a file'
  ):
    data.load('csv', data_path='/dev/zero')
  fifo = tmp_path / 'pipe.csv'
  os.mkfifo(fifo)
  writer = threading.Thread(target=lambda: fifo.write_text('a,b,t\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n'))
  writer.start()
  raw = data.load('csv', data_path=str(fifo), target_column='t')
  writer.join()
  assert raw.x.shape == (4, 2) and raw.y.tolist() == [0, 1, 0, 1]


def test_byte_string_labels_are_text_labels(tmp_path):
  """`np.array([b'cat', ...])` (dtype `S`) was refused as 'not numbers or text labels'."""
  y = np.array([b'cat', b'dog', b'cat', b'eel'] * 10)
  np.savez(tmp_path / 'd.npz', x=np.ones((40, 3)), y=y)
  raw = data.load('npz', data_path=str(tmp_path / 'd.npz'))
  assert raw.class_names == ('cat', 'dog', 'eel') and raw.y[:4].tolist() == [0, 1, 0, 2]
  np.savez(tmp_path / 'bad.npz', x=np.ones((2, 3)), y=np.array([b'\xff', b'a']))
  with pytest.raises(ValueError, match=r'bad.npz: targets must be real numbers or text labels, got dtype'):
    data.load('npz', data_path=str(tmp_path / 'bad.npz'))


def test_a_missing_file_a_dangling_link_or_a_link_loop_is_said_not_to_exist(tmp_path):
  """Not "not a valid .npz file (not a zip archive)": the file is not there."""
  x_path, y_path = _files(tmp_path, np.arange(40) % 3)
  os.symlink(tmp_path / 'gone.npz', tmp_path / 'dangling.npz')
  os.symlink(tmp_path / 'loop.npz', tmp_path / 'loop.npz')
  cases = {
    'missing.npz': r'missing\.npz: no such file\.$',
    'dangling.npz': r'dangling\.npz: a symbolic link to .*gone\.npz, which does not exist: no such file\.$',
    'loop.npz': r'loop\.npz: a symbolic link loop \(it leads back to itself\): no such file\.$',
  }
  for name, message in cases.items():
    path = str(tmp_path / name)
    with pytest.raises(ValueError, match=message):
      data.load('npz', data_path=path)
    with pytest.raises(ValueError, match=message):
      data.load('npy', data_path=path, labels_path=y_path)
    with pytest.raises(ValueError, match=message):
      data.load('npy', data_path=x_path, labels_path=path)
  from linear_jax.data import readers  # pylint: disable=import-outside-toplevel

  with pytest.raises(ValueError, match=r'loop\.npz: a symbolic link loop'):  # the readers themselves too
    readers.npz_arrays(str(tmp_path / 'loop.npz'), ('x', 'y'))
  with pytest.raises(ValueError, match=r'data_batch_1: no such file'):
    readers.read_cifar_py(str(tmp_path / 'data_batch_1'))


def test_training_labels_of_one_class_are_refused_and_a_test_set_of_one_is_not(tmp_path):
  """Labels all 7 made 8 classes of which one occurs: training predicted 7 and printed test accuracy
  1.0000. All 0 was refused with advice to use a binary loss, which refused them too."""
  x = np.random.default_rng(0).normal(size=(40, 3))
  for label in (0, 7):
    with pytest.raises(ValueError, match=rf'^arrays: every label is {label}: one class, and a classifier'):
      from_arrays(x, np.full(40, label))
  rows = ''.join(f'{a},{b},{c},setosa\n' for a, b, c in x)
  (tmp_path / 'one.csv').write_text('a,b,c,species\n' + rows)
  cfg = experiment.DataConfig(dataset='csv', data_path=str(tmp_path / 'one.csv'), target_column='species')
  with pytest.raises(ValueError, match=r"one.csv: every label is 'setosa': one class"):
    experiment.load_dataset(cfg)
  two = from_arrays(x, np.arange(40) % 2, test=(x[:5], np.zeros(5, np.int64)))  # held out: one class is fine
  assert two.num_classes == 2 and len(two.test[1]) == 5
  # A file of two classes whose training split holds one (a rare class, all drawn into the held-out rows).
  rare = np.r_[np.zeros(38, np.int64), 1, 1]
  ds = data.prepare(from_arrays(x, rare), 'rare', 0.0, 0.0, seed=0)
  one = dataclasses.replace(ds, y_train=np.zeros_like(ds.y_train))
  with pytest.raises(ValueError, match=r'--dataset=rare: every label of the training split is 0: one class'):
    train.fit(config.TrainConfig(epochs=1), one)
  assert train.fit(config.TrainConfig(epochs=1), ds).history  # both classes in training: trains
