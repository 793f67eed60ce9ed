"""Tests of linear_jax.data: every format built here, validated where it enters."""

import dataclasses
import gzip
import io
import json
import os
import pathlib
import pickle
import re
import struct

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.data import memory
from linear_jax.data import records
from linear_jax.data.build import from_arrays
from linear_jax.data.readers import detect_delimiter


def test_builtin_datasets_are_real_and_offline():
  digits = data.load('digits')
  assert digits.x.shape == (1797, 64) and digits.num_classes == 10 and digits.image_shape == (8, 8)
  cancer = data.load('breast_cancer')
  assert cancer.x.shape == (569, 30) and set(np.unique(cancer.y)) == {0, 1}
  diabetes = data.load('diabetes')
  assert diabetes.kind == 'real' and diabetes.x.shape == (442, 10)


def test_synthetic_generators():
  b = data.blobs(100, 5, 4, seed=1)
  assert b.x.shape == (100, 5) and b.y.max() < 4
  r = data.linreg(50, 3, seed=2)
  np.testing.assert_allclose(r.y, r.x @ r.extra['W'][0] + r.extra['b'][0], atol=0.5)
  two = data.binary2d(80)
  assert two.x.shape == (80, 2) and two.num_classes == 2


def test_prepare_splits_and_fits_preprocessing_on_train_only():
  raw = data.load('digits')
  ds = data.prepare(raw, 'digits', val_fraction=0.1, test_fraction=0.2, seed=3)
  n = len(ds.x_train) + len(ds.x_val) + len(ds.x_test)
  assert n == 1797 and len(ds.x_test) == 359 and len(ds.x_val) == 180
  assert ds.x_train.dtype == np.float32
  np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)  # fitted on train...
  assert np.abs(ds.x_val.mean(0)).max() > 1e-3  # ...so other splits are not exactly centred
  again = data.prepare(raw, 'digits', seed=3)
  np.testing.assert_array_equal(again.y_test, ds.y_test)  # the split is a function of the seed


def test_params_to_raw_folds_preprocessing():
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 5.0, size=(20, 4))
  shift, scale = x.mean(0), x.std(0)
  w, b = rng.normal(size=(3, 4)), rng.normal(size=3)
  w_raw, b_raw = data.params_to_raw(w, b, shift, scale)
  np.testing.assert_allclose(x @ w_raw.T + b_raw, ((x - shift) / scale) @ w.T + b, rtol=1e-10)


# ------------------------------------------------------------------ CIFAR-10


def _cifar_bin(folder, n=5, seed=0):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  for name in ['data_batch_1.bin', 'data_batch_2.bin', 'test_batch.bin']:
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(np.concatenate([labels[:, None], pixels], 1).tobytes())


def _cifar_py(folder, n=5, seed=0):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  for name in ['data_batch_1', 'test_batch']:
    batch = {
      b'data': rng.integers(0, 256, (n, 3072)).astype(np.uint8),
      b'labels': rng.integers(0, 10, n).tolist(),
      b'batch_label': b'x',
    }
    with open(os.path.join(folder, name), 'wb') as f:
      pickle.dump(batch, f)


@pytest.mark.parametrize('fmt', ['bin', 'py'])
@pytest.mark.parametrize('point_at', ['folder', 'parent'])
def test_cifar10_both_formats_from_folder_or_parent(tmp_path, fmt, point_at):
  folder = tmp_path / f'cifar-10-batches-{fmt}'
  (_cifar_bin if fmt == 'bin' else _cifar_py)(str(folder))
  raw = data.load('cifar10', data_dir=str(folder if point_at == 'folder' else tmp_path))
  assert raw.x.shape == ((10 if fmt == 'bin' else 5), 3072) and raw.image_shape == (3, 32, 32)
  assert raw.test[0].shape == (5, 3072) and raw.num_classes == 10


def test_cifar_bin_values_are_read_exactly(tmp_path):
  record = np.zeros(3073, np.uint8)
  record[0], record[1], record[3072] = 7, 200, 9
  path = tmp_path / 'data_batch_1.bin'
  path.write_bytes(record.tobytes())
  x, y = data.read_cifar_bin(str(path))
  assert y.tolist() == [7] and x[0, 0] == 200 and x[0, 3071] == 9


def test_cifar_bin_rejects_bad_size_and_label(tmp_path):
  path = tmp_path / 'data_batch_1.bin'
  path.write_bytes(b'\x01' * 3074)
  with pytest.raises(ValueError, match=r'data_batch_1.bin: size 3074 bytes is not a positive multiple'):
    data.read_cifar_bin(str(path))
  path.write_bytes(bytes([3]) + b'\x00' * 3072 + bytes([12]) + b'\x00' * 3072)
  with pytest.raises(ValueError, match=r'record 1 has label byte 12, above 9'):
    data.read_cifar_bin(str(path))


class _Evil:
  def __reduce__(self):
    return (os.system, ('echo pwned',))


def test_cifar_py_refuses_foreign_objects(tmp_path):
  path = tmp_path / 'data_batch_1'
  path.write_bytes(pickle.dumps({b'data': np.zeros((1, 3072), np.uint8), b'labels': [0], b'x': _Evil()}))
  with pytest.raises(ValueError, match=r'data_batch_1: refused to unpickle (posix|os)\.system'):
    data.read_cifar_py(str(path))


def test_cifar_py_rejects_bad_contents(tmp_path):
  path = tmp_path / 'data_batch_1'
  path.write_bytes(pickle.dumps({b'data': np.zeros((2, 3072), np.uint8), b'labels': [0, 10]}))
  with pytest.raises(ValueError, match=r'label 10 at index 1 is outside \[0, 9\]'):
    data.read_cifar_py(str(path))
  path.write_bytes(pickle.dumps({b'data': np.zeros((2, 100), np.uint8), b'labels': [0, 1]}))
  with pytest.raises(ValueError, match=r"b'data' must be an \[N, 3072\] array"):
    data.read_cifar_py(str(path))
  path.write_bytes(b'not a pickle at all')
  with pytest.raises(ValueError, match=r'data_batch_1: not a valid CIFAR-10 Python batch'):
    data.read_cifar_py(str(path))


class _Rot13:
  def __reduce__(self):
    import codecs  # pylint: disable=import-outside-toplevel

    return (codecs.encode, ('abc', 'rot13'))


def test_cifar_py_pickled_by_python3_protocol_2_is_read_and_nothing_else_from_codecs(tmp_path):
  """Protocol 2 writes bytes as `_codecs.encode(text, 'latin1')`: read as bytes, any other use refused."""
  x = np.random.default_rng(0).integers(0, 256, (3, 3072)).astype(np.uint8)
  batch = {b'data': x, b'labels': [3, 0, 9], b'batch_label': b'training batch 1 of 5'}
  path = tmp_path / 'data_batch_1'
  path.write_bytes(pickle.dumps(batch, protocol=2))
  assert b'_codecs' in path.read_bytes()  # the case at hand: bytes through _codecs.encode
  got_x, got_y = data.read_cifar_py(str(path))
  np.testing.assert_array_equal(got_x, x.astype(np.float32))
  np.testing.assert_array_equal(got_y, [3, 0, 9])
  path.write_bytes(pickle.dumps({b'data': x, b'labels': [0, 1, 2], b'x': _Rot13()}, protocol=2))
  with pytest.raises(ValueError, match=r"refused to unpickle _codecs\.encode\(str, 'rot13'\)"):
    data.read_cifar_py(str(path))


def test_cifar_py_nested_labels_are_refused_before_any_array_is_built(tmp_path):
  """A few kilobytes of shared references nest into 10^12 labels: refused from the first, not built."""
  inner = [0] * 1000
  nested = [[inner] * 1000] * 1000  # pickled once each: memo references
  path = tmp_path / 'data_batch_1'
  path.write_bytes(pickle.dumps({b'data': np.zeros((1000, 3072), np.uint8)[:1], b'labels': nested}))
  assert path.stat().st_size < 20_000
  with pytest.raises(
    ValueError, match=r"b'labels' must be a flat list of integers; label 0 is a nested list"
  ):
    data.read_cifar_py(str(path))
  path.write_bytes(pickle.dumps({b'data': np.zeros((2, 3072), np.uint8), b'labels': np.zeros((2, 2), int)}))
  with pytest.raises(ValueError, match=r"b'labels' must be a flat list of integers, got an array of shape"):
    data.read_cifar_py(str(path))


# ------------------------------------------------------------------ MNIST IDX


def _idx(folder, n=6, rows=4, cols=3, gz=False, magic_images=2051, label_count=None, max_label=9):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  images = (
    struct.pack('>IIII', magic_images, n, rows, cols)
    + rng.integers(0, 256, n * rows * cols).astype(np.uint8).tobytes()
  )
  labels = (
    struct.pack('>II', 2049, n if label_count is None else label_count)
    + rng.integers(0, max_label + 1, n).astype(np.uint8).tobytes()
  )
  opener = gzip.compress if gz else (lambda b: b)
  ext = '.gz' if gz else ''
  for prefix in ('train', 't10k'):
    (folder / f'{prefix}-images-idx3-ubyte{ext}').write_bytes(opener(images))
    (folder / f'{prefix}-labels-idx1-ubyte{ext}').write_bytes(opener(labels))


@pytest.mark.parametrize('gz', [False, True])
def test_mnist_idx_raw_and_gzipped(tmp_path, gz):
  _idx(tmp_path / 'fashion', gz=gz)
  raw = data.load('mnist', data_dir=str(tmp_path))  # the folder above works too
  assert raw.x.shape == (6, 12) and raw.image_shape == (4, 3) and raw.test[0].shape == (6, 12)


def test_mnist_rejects_bad_magic_and_counts(tmp_path):
  _idx(tmp_path / 'a', magic_images=2049)
  with pytest.raises(ValueError, match=r'train-images-idx3-ubyte: IDX magic number 2049, expected 2051'):
    data.load('mnist', data_dir=str(tmp_path / 'a'))
  _idx(tmp_path / 'b', label_count=7)
  with pytest.raises(ValueError, match=r'train-labels-idx1-ubyte: header says 7 labels but the file has 6'):
    data.load('mnist', data_dir=str(tmp_path / 'b'))
  _idx(tmp_path / 'c')
  path = tmp_path / 'c' / 'train-images-idx3-ubyte'
  path.write_bytes(path.read_bytes()[:-5])
  with pytest.raises(ValueError, match=r'header says 6 images of 4x3 \(88 bytes\) but the file has 83'):
    data.load('mnist', data_dir=str(tmp_path / 'c'))
  with pytest.raises(ValueError, match=r'no MNIST IDX files found.*; put the four IDX files of MNIST'):
    data.load('mnist', data_dir=str(tmp_path / 'nothing-here'))
  # Where to get CIFAR-10 is said, since nothing is downloaded.
  with pytest.raises(ValueError, match=r'no CIFAR-10 files .*www.cs.toronto.edu/~kriz/cifar.html, unpacked'):
    data.load('cifar10', data_dir=str(tmp_path / 'nothing-here'))


# ------------------------------------------------------------------ npz / csv


def test_npz_round_trip_and_errors(tmp_path):
  path = tmp_path / 'd.npz'
  np.savez(path, x=np.ones((4, 2, 2)), y=np.array([0, 1, 2, 1]))
  raw = data.load('npz', data_path=str(path))
  assert raw.x.shape == (4, 4) and raw.num_classes == 3 and raw.image_shape == (2, 2)
  np.savez(path, x=np.ones((4, 2)), z=np.zeros(4))
  with pytest.raises(ValueError, match=r'd.npz: missing array\(s\) y'):
    data.load('npz', data_path=str(path))
  np.savez(path, x=np.array([[1.0, np.nan]]), y=np.array([0]))
  with pytest.raises(ValueError, match=r'd.npz: 1 non-finite feature'):
    data.load('npz', data_path=str(path))
  np.savez(path, x=np.ones((3, 2)), y=np.array([0, 1]))
  with pytest.raises(ValueError, match=r'd.npz: 3 feature rows but 2 targets'):
    data.load('npz', data_path=str(path))
  np.savez(path, x=np.array([object()] * 2, dtype=object), y=np.array([0, 1]))
  with pytest.raises(ValueError, match=r'd.npz: cannot read as .npz without pickle'):
    data.load('npz', data_path=str(path))
  path.write_bytes(b'garbage')
  with pytest.raises(ValueError, match=r'd.npz: not a valid .npz file'):
    data.load('npz', data_path=str(path))


def test_csv_with_header_named_target_and_errors(tmp_path):
  path = tmp_path / 't.csv'
  path.write_text('a,label,b\n1,0,2\n3,1,4\n5,1,6\n')
  raw = data.load('csv', data_path=str(path), target_column='label')
  np.testing.assert_array_equal(raw.x, [[1, 2], [3, 4], [5, 6]])
  np.testing.assert_array_equal(raw.y, [0, 1, 1])
  reg = data.load('csv', data_path=str(path), target_column='-1')
  assert reg.kind == 'class'  # integral targets; real ones would give 'real'
  path.write_text('1,2,0.5\n3,4,1.5\n')
  assert data.load('csv', data_path=str(path)).kind == 'real'
  path.write_text('a,b\n1,2\n3,x\n')
  with pytest.raises(ValueError, match=r"t.csv: line 3, column 2: 'x' is not a number"):
    data.load('csv', data_path=str(path))
  path.write_text('a,b\n1,2\n3\n')
  with pytest.raises(ValueError, match=r't.csv: line 3 has 1 fields, expected 2'):
    data.load('csv', data_path=str(path))
  path.write_text('a,b\n1,2\n')
  with pytest.raises(ValueError, match=r"t.csv: no column named 'c'; columns: a, b"):
    data.load('csv', data_path=str(path), target_column='c')
  path.write_text('a,b\n1,-1\n')
  with pytest.raises(ValueError, match=r't.csv: label -1 at index 0 is negative'):
    data.load('csv', data_path=str(path))
  # A byte-order mark (Excel's "CSV UTF-8") is not part of the first name; names are matched stripped.
  path.write_text('label,a,b\n0,1,2\n1,3,4\n', encoding='utf-8-sig')
  assert data.load('csv', data_path=str(path), target_column='label').y.tolist() == [0, 1]
  with pytest.raises(ValueError, match=r"first column is named 'label', like a label"):
    data.load('csv', data_path=str(path))
  path.write_text('a, b, species\n1, 2, 0\n3, 4, 1\n')
  assert data.load('csv', data_path=str(path), target_column='species').y.tolist() == [0, 1]


def test_unknown_dataset_and_missing_path():
  with pytest.raises(ValueError, match=r"Unknown dataset 'imagenet'"):
    data.load('imagenet')
  with pytest.raises(ValueError, match=r'--dataset=npz needs --data_path'):
    data.load('npz')


def test_data_dir_with_tilde_is_expanded(tmp_path, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path))
  _cifar_bin(str(tmp_path / 'data' / 'cifar-10-batches-bin'))
  assert data.load('cifar10', data_dir='~/data').x.shape == (10, 3072)


def test_from_arrays_trains_like_logistic_regression():
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel

  from linear_jax.optim import config
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  means = rng.normal(size=(3, 4, 4)) * 2
  y = rng.integers(0, 3, 300)
  x = means[y] + rng.normal(size=(300, 4, 4))  # "images" of 4 × 4
  raw = from_arrays(x, y.astype(np.float64), class_names=['a', 'b', 'c'])  # whole floats are labels
  assert (raw.kind, raw.num_classes, raw.image_shape, raw.x.shape) == ('class', 3, (4, 4), (300, 16))
  ds = data.prepare(raw, 'mine', val_fraction=0.0)
  cfg = config.TrainConfig(loss='softmax', epochs=40, learning_rate=0.1, reg=1e-4)
  ours = train.evaluate(cfg, ds, train.fit(cfg, ds).params)['test_accuracy']
  ref = LogisticRegression(max_iter=2000).fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
  assert ours >= ref - 0.02


def test_from_arrays_regression_and_official_test_split():
  rng = np.random.default_rng(1)
  x, x_test = rng.normal(size=(80, 3)), rng.normal(size=(20, 3))
  w = np.array([1.0, -2.0, 0.5])
  raw = from_arrays(x, x @ w + 0.3, test=(x_test, x_test @ w + 0.3))
  assert raw.kind == 'real' and raw.num_classes is None
  ds = data.prepare(raw, 'mine')
  assert len(ds.x_test) == 20 and len(ds.x_train) + len(ds.x_val) == 80  # the given test split, kept whole


@pytest.mark.parametrize('streamed', [False, True])
def test_fractions_that_hold_out_every_row_are_refused(streamed):
  # 0.5 + 0.5 of digits' 1,797 rows rounded to 898 + 898, and the run trained on the one row left.
  from linear_jax.datapath import stream  # pylint: disable=import-outside-toplevel

  prepare = stream.prepare if streamed else data.prepare
  rng = np.random.default_rng(0)
  raw = from_arrays(rng.normal(size=(1797, 3)).astype(np.float32), np.arange(1797) % 2)
  with pytest.raises(
    ValueError, match=r'val_fraction=0.5 and test_fraction=0.5 hold out every row; their sum'
  ):
    prepare(raw, 'mine', val_fraction=0.5, test_fraction=0.5)
  ds = prepare(raw, 'mine', val_fraction=0.5, test_fraction=0.4)
  assert len(ds.x_train) == 1797 - 898 - 719
  given = from_arrays(raw.x, raw.y, test=(raw.x[:5], raw.y[:5]))  # its own test split: the fraction is unused
  assert len(prepare(given, 'mine', val_fraction=0.5, test_fraction=0.5).x_train) == 1797 - 898


@pytest.mark.parametrize('streamed', [False, True])
@pytest.mark.parametrize(
  ('kwargs', 'match'),
  [  # each failed in NumPy's or Python's words (a negative seed, a str, an int dtype, a list)
    ({'seed': -1}, r'seed must be an integer in \[0, 2\*\*32\), got -1'),
    ({'val_fraction': '0.1'}, r"val_fraction must be a number in \[0, 1\), got '0.1'"),
    ({'dtype': np.int32}, r'dtype must be a float dtype \(float32, float64\), got int32'),
    (
      {'raw': [np.ones((4, 2)), np.zeros(4)]},
      r'mine: prepare takes a Raw \(data.load, build.from_arrays\), got list',
    ),
  ],
)
def test_prepare_refuses_bad_arguments_by_name(streamed, kwargs, match):
  from linear_jax.datapath import stream  # pylint: disable=import-outside-toplevel

  if streamed and 'seed' in kwargs:
    kwargs = {'test_fraction': 'x'}  # streaming does not shuffle: no seed
    match = r"test_fraction must be a number in \[0, 1\), got 'x'"
  args = {'raw': from_arrays(np.ones((40, 2)), np.arange(40) % 2), **kwargs}
  with pytest.raises(ValueError, match=match):
    (stream.prepare if streamed else data.prepare)(args.pop('raw'), 'mine', **args)


def test_from_arrays_text_labels_name_the_classes():
  x = np.arange(12.0).reshape(6, 2)
  raw = from_arrays(x, ['dog', 'cat', 'dog', 'bird', 'cat', 'dog'], test=(x[:2], ['cat', 'bird']))
  assert raw.class_names == ('bird', 'cat', 'dog') and raw.num_classes == 3  # sorted, as np.unique
  np.testing.assert_array_equal(raw.y, [2, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(raw.test[1], [1, 0])
  with pytest.raises(
    ValueError, match=r"arrays \(test\): label 'fish' does not occur in the training labels"
  ):
    from_arrays(x, ['a', 'b'] * 3, test=(x[:1], ['fish']))
  with pytest.raises(ValueError, match='class_names cannot be given with text labels'):
    from_arrays(x, ['a', 'b'] * 3, class_names=['x', 'y'])


@pytest.mark.parametrize(
  'args, kwargs, match',
  [
    ((np.ones(5), np.zeros(5)), {}, r'arrays: x must be \[N, D\]'),
    ((np.array([['a']]), np.zeros(1)), {}, 'arrays: x must be numeric'),
    ((np.array([[1.0], [np.nan]]), np.zeros(2)), {}, 'arrays: .*non-finite.*example 1'),
    ((np.ones((3, 2)), np.zeros(2)), {}, 'arrays: 3 feature rows but 2 targets'),
    ((np.ones((3, 2)), np.array([0, 1, 5])), {'num_classes': 3}, 'label 5 at index 2 is outside'),
    ((np.ones((3, 2)), np.array([0, -1, 1])), {}, 'label -1 at index 1 is negative'),
    ((np.ones((3, 2)), np.array([0.5, 1.5, 2.0])), {'num_classes': 3}, 'targets are real numbers'),
    (
      (np.ones((3, 2)), np.array([0, 1, 1])),
      {'test': (np.ones((2, 3)), np.zeros(2))},
      r'\(test\): x has shape',
    ),
    (
      (np.ones((3, 2)), np.array([0, 1, 1])),
      {'test': (np.ones((2, 2)), np.array([0, 4]))},
      r'\(test\).*label 4',
    ),
    ((np.ones((3, 2)), np.array([0, 1, 1])), {'class_names': ['a']}, '1 class names for 2 classes'),
    ((np.ones((3, 2)), np.array([0, 1, 1])), {'name': 'mine.x', 'num_classes': 0}, 'mine.x: num_classes'),
    # Both were taken as one class while the labels held two.
    ((np.ones((3, 2)), np.array([0, 1, 1])), {'num_classes': 1}, r'num_classes must be a whole number >= 2'),
    ((np.ones((3, 2)), np.array([0, 1, 1])), {'num_classes': True}, r'num_classes .* got True'),
    (  # NumPy's broadcast error
      (np.ones((3, 2)), np.array([[0.5, 1.5], [1.0, 2.5], [0.2, 0.1]])),
      {'test': (np.ones((2, 2)), np.array([0.5, 1.5]))},
      r'\(test\): y has shape \[2\], but the training targets have \[3, 2\]',
    ),
    (  # an IndexError
      (np.ones((3, 2)), np.array([0, 1, 1])),
      {'test': (np.ones((2, 2)),)},
      r'\(test\): test must be \(x, y\) or \(x, y, weights\), got a tuple of 1',
    ),
  ],
)
def test_from_arrays_refuses_bad_input(args, kwargs, match):
  with pytest.raises(ValueError, match=match):
    from_arrays(*args, **kwargs)


# ------------------------------------------------------------------ large files: npy, maps, dtypes


def _reference_prepare(x, y, seed=0, val_fraction=0.1, test_fraction=0.2, dtype=np.float32, file_order=False):
  """The split and standardization written plainly in float64 NumPy: the reference `prepare` must match.

  `file_order`: data kept in its file's dtype keeps the file's row order within each split.
  """
  idx = data.split_indices(len(x), val_fraction, test_fraction, seed)
  idx = {s: np.sort(i) for s, i in idx.items()} if file_order else idx
  x = np.asarray(x, np.float64)
  shift, sd = x[idx['train']].mean(0), x[idx['train']].std(0)
  scale = np.where(sd > 1e-12 * max(1.0, np.abs(x[idx['train']]).max()), sd, 1.0)
  return {s: (((x[i] - shift) / scale).astype(dtype), y[i]) for s, i in idx.items()}


def _features(n=500, d=7, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d) + rng.normal(scale=10.0, size=d)
  return x, rng.integers(0, 3, n)


def test_column_stats_in_blocks_match_numpy_float64(monkeypatch):
  monkeypatch.setattr(data.chunks, 'CHUNK_BYTES', 4 * 7 * 13)  # 13 rows a block: many merges
  x, _ = _features()
  x[:, 0] += 1e6  # a large mean: a naive sum of squares would lose the variance
  stats = data.chunks.ColumnStats(7)
  for a, b in data.chunks.blocks(len(x), data.chunks.rows_per_chunk(x.astype(np.float32))):
    stats.add(x[a:b].astype(np.float32))
  x32 = x.astype(np.float32).astype(np.float64)
  # Within a few float32 roundings of the float64 answer, although the mean is 1e6 standard deviations away.
  np.testing.assert_allclose(stats.mean, x32.mean(0), rtol=0, atol=1e-6 * x32.std(0).min())
  np.testing.assert_allclose(stats.std, x32.std(0), rtol=1e-6)
  x = x32.astype(np.float32)
  with np.errstate(invalid='ignore'):
    naive = np.sqrt(np.mean(x**2, 0) - np.mean(x, 0) ** 2)  # what the shift saves us from
  assert not np.isclose(naive[0], x32[:, 0].std(), rtol=1e-3)


def test_statistics_hold_for_large_means_and_values_and_refuse_what_overflows():
  rng = np.random.default_rng(3)
  # Default blocks of 5,242 rows, about 3,700 of them training rows, summed in float32: the shift
  # must itself be exact, or the variance cancels.
  x = (5e6 + rng.standard_normal((20000, 50))).astype(np.float32)
  ds = data.prepare(from_arrays(x, rng.integers(0, 2, 20000)), 'big mean', seed=0)
  ref = x[data.split_indices(20000, 0.1, 0.2, 0)['train']].astype(np.float64)
  np.testing.assert_allclose(ds.scale, ref.std(0), rtol=1e-4)
  # The float32 splits are shifted by the exact mean rounded to float32, and the dataset records that.
  np.testing.assert_array_equal(ds.shift, ref.mean(0).astype(np.float32))
  # Finite values whose float32 sums overflow: summed again in float64, not dropped.
  huge = (1e35 * (1 + 0.1 * rng.standard_normal((3000, 4)))).astype(np.float32)
  ds = data.prepare(from_arrays(huge, rng.integers(0, 2, 3000)), 'huge', val_fraction=0.0, test_fraction=0.0)
  assert np.isfinite(ds.x_train).all()
  np.testing.assert_allclose(ds.scale, huge.astype(np.float64).std(0), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(ds.x_train, np.float64).std(0), 1.0, rtol=1e-4)
  # float64 values whose squares overflow float64: refused by name, never a silently wrong scale.
  vast = 1e200 * (1 + rng.standard_normal((100, 3)))
  with pytest.raises(
    ValueError, match=r'vast: rows 0-99: feature values too large for the preprocessing statistics'
  ):
    data.prepare(from_arrays(vast, rng.integers(0, 2, 100)), 'vast', val_fraction=0.0, test_fraction=0.0)


@pytest.mark.parametrize('fmt', ['npy', 'npz', 'npz_compressed'])
def test_float32_file_prepares_like_numpy_and_stays_float32(tmp_path, monkeypatch, fmt):
  monkeypatch.setattr(data.chunks, 'CHUNK_BYTES', 4 * 7 * 50)  # several blocks
  x, y = _features()
  x = x.astype(np.float32)
  if fmt == 'npy':
    np.save(tmp_path / 'x.npy', x)
    np.save(tmp_path / 'y.npy', y)
    raw = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  else:
    (np.savez if fmt == 'npz' else np.savez_compressed)(tmp_path / 'd.npz', x=x, y=y)
    raw = data.load('npz', data_path=str(tmp_path / 'd.npz'))
  assert raw.x.dtype == np.float32 and data.chunks.is_mapped(raw.x) == (fmt != 'npz_compressed')
  ds = data.prepare(raw, fmt, seed=4)
  ref = _reference_prepare(x, y, seed=4, file_order=True)
  for s in ('train', 'val', 'test'):
    got = getattr(ds, f'x_{s}')
    assert got.dtype == np.float32 and not data.chunks.is_mapped(got)
    assert got.ctypes.data % data.chunks.ALIGN == 0  # the CPU device takes it without a copy
    np.testing.assert_allclose(got, ref[s][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(getattr(ds, f'y_{s}'), ref[s][1])


def test_threaded_passes_give_the_same_splits_and_statistics_as_one_thread(tmp_path, monkeypatch):
  monkeypatch.setattr(data.chunks, 'CHUNK_BYTES', 4 * 7 * 11)  # 11 rows a block: 46 blocks
  x, y = _features()
  x[:, 2] += 1e3  # a large mean: the shift must be the same first block's in every run
  np.save(tmp_path / 'x.npy', x.astype(np.float32))
  np.save(tmp_path / 'y.npy', y)
  raw = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  runs = []
  for threads in (1, 3):
    monkeypatch.setattr(data.chunks, 'workers', lambda threads=threads: threads)
    runs.append(data.prepare(raw, 'npy', seed=2))
  one, three = runs
  np.testing.assert_array_equal(one.shift, three.shift)  # merged in block order: bit for bit
  np.testing.assert_array_equal(one.scale, three.scale)
  for s in ('train', 'val', 'test'):
    np.testing.assert_array_equal(getattr(one, f'x_{s}'), getattr(three, f'x_{s}'))
  ref = _reference_prepare(x.astype(np.float32), y, seed=2, file_order=True)
  np.testing.assert_allclose(three.x_train, ref['train'][0], rtol=1e-4, atol=1e-4)


def test_finite_values_too_large_to_square_in_float32_still_count(tmp_path, monkeypatch):
  # (4e19)² overflows float32: such a block is summed again in float64, never left out silently.
  monkeypatch.setattr(data.chunks, 'CHUNK_BYTES', 4 * 7 * 11)
  x, y = _features()
  x[::7, 4] = 5e19 + 1e18 * x[::7, 4]
  x = x.astype(np.float32)
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', y)
  raw = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  ds = data.prepare(raw, 'npy', seed=1)
  train = x[np.sort(data.split_indices(len(x), 0.1, 0.2, 1)['train'])].astype(np.float64)
  np.testing.assert_allclose(ds.shift, train.mean(0), rtol=1e-5)
  np.testing.assert_allclose(ds.scale[4], train[:, 4].std(), rtol=1e-5)


def test_threaded_read_names_the_first_bad_block_in_file_order(tmp_path, monkeypatch):
  monkeypatch.setattr(data.chunks, 'CHUNK_BYTES', 4 * 3 * 8)  # 8 rows a block
  monkeypatch.setattr(data.chunks, 'workers', lambda: 3)
  x = np.ones((400, 3), np.float32)
  x[203, 1], x[377, 0] = np.nan, np.inf  # two bad blocks, probably read by different threads
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', np.arange(400) % 2)
  raw = data.load(
    'npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'), check_values=False
  )
  with pytest.raises(ValueError, match=r'in rows 200-207; first at example 203, feature 1: nan'):
    data.prepare(raw, 'npy')


def test_in_order_keeps_the_order_and_stops_early():
  calls = []

  def slow_square(i):
    calls.append(i)
    return i * i

  assert list(data.chunks.in_order(slow_square, range(50), threads=3)) == [i * i for i in range(50)]
  calls.clear()
  results = data.chunks.in_order(slow_square, range(1000), threads=2)
  assert next(results) == 0
  results.close()  # a consumer that stops (an error found) leaves the rest unread
  assert len(calls) <= 1 + 2 * 2


def test_float64_data_has_the_same_split_in_either_training_dtype():
  raw = data.load('digits')
  single, double = data.prepare(raw, 'd', seed=5), data.prepare(raw, 'd', seed=5, dtype=np.float64)
  assert single.x_train.dtype == np.float32 and double.x_train.dtype == np.float64
  np.testing.assert_array_equal(single.y_train, double.y_train)
  np.testing.assert_allclose(single.x_train, double.x_train, rtol=1e-6, atol=1e-6)


def test_float64_data_is_standardized_before_rounding():
  x, y = _features()
  x[:, 1] += 1e5  # float32 rounding of the raw value would cost ~1e-3 standardized units here
  ds = data.prepare(from_arrays(x, y), 'f64', seed=1)
  ref = _reference_prepare(x, y, seed=1)
  np.testing.assert_allclose(ds.x_train, ref['train'][0], rtol=0, atol=1e-6)


@pytest.mark.parametrize('narrow', ['float16', 'bfloat16'])
def test_half_precision_files_stay_narrow_on_the_host(tmp_path, narrow):
  dt = np.dtype(np.float16) if narrow == 'float16' else data.chunks.bfloat16()
  x, y = _features()
  np.save(tmp_path / 'x.npy', x.astype(dt))  # bfloat16 is saved as '|V2' and read back as bfloat16
  np.save(tmp_path / 'y.npy', y)
  raw = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  assert raw.x.dtype == dt
  ds = data.prepare(raw, narrow)
  assert ds.x_train.dtype == dt and ds.x_test.dtype == dt
  ref = _reference_prepare(x.astype(dt).astype(np.float64), y, file_order=True)
  tol = 1e-2 if narrow == 'float16' else 2e-2  # one rounding to the narrow type, after standardizing
  np.testing.assert_allclose(ds.x_train.astype(np.float64), ref['train'][0], rtol=tol, atol=tol)


def test_npy_refuses_objects_without_unpickling(tmp_path):
  np.save(tmp_path / 'x.npy', np.array([_Evil(), _Evil()], dtype=object), allow_pickle=True)
  np.save(tmp_path / 'y.npy', np.array([0, 1]))
  with pytest.raises(ValueError, match=r'x.npy: cannot read as .npy without pickle: it holds Python objects'):
    data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  np.save(tmp_path / 'x.npy', np.ones((2, 3), np.float32))
  np.save(tmp_path / 'y.npy', np.array([_Evil(), _Evil()], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match=r'y.npy: cannot read as .npy without pickle: it holds Python objects'):
    data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))


def test_flags_that_would_be_ignored_are_refused(tmp_path):
  np.savez(tmp_path / 'd.npz', x=np.ones((4, 3)), y=np.arange(4) % 2)
  with pytest.raises(ValueError, match=r'--labels_path is for --dataset=npy; --dataset=npz holds its labels'):
    data.load('npz', data_path=str(tmp_path / 'd.npz'), labels_path=str(tmp_path / 'y.npy'))
  with pytest.raises(ValueError, match=r'--test_labels_path is for --dataset=npy; --dataset=npz holds'):
    data.load(
      'npz', data_path=str(tmp_path / 'd.npz'), test_path=str(tmp_path / 'd.npz'), test_labels_path='y.npy'
    )
  np.save(tmp_path / 'x.npy', np.ones((4, 3)))
  np.save(tmp_path / 'y.npy', np.arange(4) % 2)
  with pytest.raises(ValueError, match=r'--test_labels_path names the labels of a --test_path file'):
    data.load(
      'npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'), test_labels_path='y.npy'
    )


def test_data_flags_a_run_would_ignore_or_that_would_test_on_training_rows_are_refused(tmp_path):
  from linear_jax.runs import experiment

  np.savez(tmp_path / 'd.npz', x=np.ones((40, 3)), y=np.arange(40) % 2)
  with pytest.raises(ValueError, match=r'--bins=8 is read only with --features=histogram'):
    experiment.DataConfig(bins=8).check_read()
  experiment.DataConfig(bins=8, features='histogram').check_read()
  d = str(tmp_path / 'd.npz')
  same = experiment.DataConfig(dataset='npz', data_path=d, test_path=d)
  with pytest.raises(ValueError, match=r'--test_path=.*d\.npz is --data_path itself: the test metrics would'):
    same.check_read()
  np.savez(tmp_path / 't.npz', x=np.ones((10, 3)), y=np.arange(10) % 2)
  held = dataclasses.replace(same, test_path=str(tmp_path / 't.npz'), test_fraction=0.5)
  with pytest.raises(ValueError, match=r'--test_path=.*t\.npz is the test split, .*--test_fraction=0\.5'):
    held.check_read()  # before anything is loaded
  test = {'x_test': np.ones((9, 3)), 'y_test': np.arange(9) % 2}
  np.savez(tmp_path / 'own.npz', x=np.ones((40, 3)), y=np.arange(40) % 2, **test)
  own = experiment.DataConfig(dataset='npz', data_path=str(tmp_path / 'own.npz'), test_fraction=0.5)
  with pytest.raises(ValueError, match=r'own\.npz \(its x_test and y_test\) is the test split'):
    experiment.load_dataset(own.check_read())
  assert len(experiment.load_dataset(dataclasses.replace(held, test_fraction=0.2)).x_test) == 10


def test_arrays_of_the_wrong_rank_are_named_by_their_file(tmp_path):
  np.save(tmp_path / 'x0.npy', np.float32(1.0))
  np.save(tmp_path / 'xz.npy', np.ones((4, 0), np.float32))
  np.save(tmp_path / 'x.npy', np.ones((4, 3), np.float32))
  np.save(tmp_path / 'y0.npy', np.int64(1))
  np.save(tmp_path / 'y.npy', np.arange(4) % 2)
  npy = lambda x, y: data.load('npy', data_path=str(tmp_path / x), labels_path=str(tmp_path / y))
  with pytest.raises(ValueError, match=r'x0.npy: features must be \[N, D\] .*got shape \(\)'):
    npy('x0.npy', 'y.npy')
  with pytest.raises(ValueError, match=r'xz.npy: x has no features: shape \(4, 0\)'):
    npy('xz.npy', 'y.npy')
  with pytest.raises(ValueError, match=r'y0.npy: not an array of labels, one per row'):
    npy('x.npy', 'y0.npy')
  np.save(tmp_path / 'yneg.npy', np.array([0, 1, -1, 1]))
  with pytest.raises(ValueError, match=r'yneg.npy: label -1 at index 2 is negative'):  # the labels' file
    npy('x.npy', 'yneg.npy')
  np.savez(tmp_path / 'd.npz', x=np.ones((4, 3), np.float32), y=np.int64(1))
  with pytest.raises(ValueError, match=r'd.npz: the labels \(y\) must be an array, one per row'):
    data.load('npz', data_path=str(tmp_path / 'd.npz'))
  np.savez(
    tmp_path / 't.npz', x=np.ones((4, 3)), y=np.arange(4) % 2, x_test=np.ones((2, 3)), y_test=np.int64(0)
  )
  with pytest.raises(ValueError, match=r't.npz \(x_test\): the labels \(y\) must be an array'):
    data.load('npz', data_path=str(tmp_path / 't.npz'))


def test_npy_refuses_truncated_files_and_row_mismatch(tmp_path):
  np.save(tmp_path / 'x.npy', np.ones((10, 4), np.float32))
  np.save(tmp_path / 'y.npy', np.zeros(9, np.int64))
  xp, yp = str(tmp_path / 'x.npy'), str(tmp_path / 'y.npy')
  with pytest.raises(ValueError, match=r'y.npy: 9 labels but .*x.npy has 10 rows'):
    data.load('npy', data_path=xp, labels_path=yp)
  blob = (tmp_path / 'x.npy').read_bytes()
  (tmp_path / 'x.npy').write_bytes(blob[:-20])
  with pytest.raises(ValueError, match=r'x.npy: truncated: the header promises 10 x 4 float32 \(160 bytes\)'):
    data.load('npy', data_path=xp, labels_path=yp)
  header = io.BytesIO()  # a crafted shape whose product wraps around in int64
  np.lib.format.write_array_header_1_0(
    header, {'descr': '<f4', 'fortran_order': False, 'shape': (2**32, 2**32)}
  )
  (tmp_path / 'x.npy').write_bytes(header.getvalue())
  with pytest.raises(
    ValueError, match=r'x.npy: truncated: the header promises 4294967296 x 4294967296 float32'
  ):
    data.load('npy', data_path=xp, labels_path=yp)
  (tmp_path / 'x.npy').write_bytes(b'\x93NUMPY nonsense')
  with pytest.raises(ValueError, match=r'x.npy: not a valid .npy file'):
    data.load('npy', data_path=xp, labels_path=yp)
  with pytest.raises(ValueError, match=r'--dataset=npy needs --labels_path'):
    data.load('npy', data_path=xp)


def test_non_finite_values_in_a_map_are_named_by_row_and_column(tmp_path, monkeypatch):
  monkeypatch.setattr(data.chunks, 'CHUNK_BYTES', 4 * 3 * 8)
  x = np.ones((40, 3), np.float32)
  x[29, 2] = np.inf
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', np.arange(40) % 2)
  args = dict(data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  with pytest.raises(
    ValueError, match=r'x.npy: 1 non-finite feature value\(s\); first at example 29, feature 2: inf'
  ):
    data.load('npy', **args)  # checked on loading...
  raw = data.load('npy', check_values=False, **args)  # ...or by prepare's one read
  with pytest.raises(
    ValueError, match=r'x.npy: 1 non-finite .* in rows 24-31; first at example 29, feature 2: inf'
  ):
    data.prepare(raw, 'npy')  # named by its file, as the command line names it


def test_a_copy_on_write_map_keeps_the_callers_edits(tmp_path):
  """Pages are never dropped from a private map: they hold the caller's changes to the file's values."""
  x = np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32)
  x[5, 1] = np.nan
  np.save(tmp_path / 'x.npy', x)
  mine = np.load(tmp_path / 'x.npy', mmap_mode='c')
  mine[:, 0] = 7.0
  mine[5, 1] = 0.0  # the caller repairs the NaN in memory
  ds = data.prepare(from_arrays(mine, np.arange(300) % 2), 'edited', preprocess='none', val_fraction=0.0)
  np.testing.assert_array_equal(np.concatenate([ds.x_train, ds.x_test])[:, 0], 7.0)
  np.testing.assert_array_equal(mine[:, 0], 7.0)
  assert mine[5, 1] == 0.0


def _rss_file():
  with open('/proc/self/status') as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith('RssFile:'))


@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='resident file pages are read from /proc')
@pytest.mark.parametrize('order', ['C', 'F'])
def test_reading_a_map_leaves_little_of_it_resident(tmp_path, order):
  """Row blocks of a Fortran-ordered file span the file: their pages are handed back all the same."""
  x = np.asfortranarray(np.random.default_rng(0).standard_normal((20000, 400)).astype(np.float32))
  np.save(tmp_path / 'x.npy', x if order == 'F' else np.ascontiguousarray(x))
  np.save(tmp_path / 'y.npy', np.arange(20000) % 3)
  before = _rss_file()
  raw = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  assert raw.x.flags.f_contiguous == (order == 'F')
  ds = data.prepare(raw, 'npy')  # two passes: the check on loading, then prepare's read
  assert _rss_file() - before < 0.25 * x.nbytes  # the file is 32 MB
  np.testing.assert_allclose(np.asarray(ds.x_train, np.float64).std(0), 1.0, rtol=1e-4)


@pytest.mark.parametrize('dtype', [np.uint8, np.int64])
def test_an_integer_file_stays_a_map_and_prepares_like_its_float_copy(tmp_path, monkeypatch, dtype):
  """No whole float copy on loading: the memory check, and --stream, come first; the splits are
  those of the same data read into memory as floats (float32 for pixels, float64 wider), row for row."""
  monkeypatch.setattr(data.chunks, 'CHUNK_BYTES', 4 * 6 * 50)  # blocks of 50 float32 rows: the same blocks
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (500, 6)).astype(dtype)
  if dtype == np.int64:
    x = x + np.int64(2**40)  # beyond float32's integers: the statistics must not be float32 sums
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'y.npy', np.arange(500) % 3)
  raw = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  assert data.chunks.is_mapped(raw.x) and raw.x.dtype == dtype
  wide = np.float32 if dtype == np.uint8 else np.float64
  for training in (np.float32, np.float64):
    ours = data.prepare(raw, 'ints', seed=1, dtype=training)
    ref = data.prepare(from_arrays(x.astype(wide), np.arange(500) % 3), 'ints', seed=1, dtype=training)
    assert ours.x_train.dtype == ref.x_train.dtype
    np.testing.assert_array_equal(ours.scale, ref.scale)
    np.testing.assert_array_equal(ours.shift, ref.shift)
    np.testing.assert_array_equal(ours.x_train, ref.x_train)
    np.testing.assert_array_equal(ours.y_train, ref.y_train)


def test_data_that_cannot_fit_is_refused_up_front_with_the_stream_advice(tmp_path, monkeypatch):
  np.save(tmp_path / 'x.npy', np.ones((1000, 50), np.float32))
  np.save(tmp_path / 'y.npy', np.arange(1000) % 2)
  raw = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  need = data.memory_needed(1000, 50, np.float32)
  assert need == 1000 * 50 * 4 + 4 * data.chunks.CHUNK_BYTES
  monkeypatch.setattr(memory, 'memory_available', lambda: need - 1)
  np.savez_compressed(tmp_path / 'c.npz', x=np.ones((1000, 50), np.float32), y=np.arange(1000) % 2)
  with pytest.raises(ValueError, match=r'c.npz: the prepared data needs .* --stream'):
    data.load('npz', data_path=str(tmp_path / 'c.npz'))  # refused before decompressing
  # Before any work: not even the split's permutation (seconds and gigabytes for 10^8 rows).
  monkeypatch.setattr(data, 'split_indices', lambda *a, **k: pytest.fail('split before the memory check'))
  with pytest.raises(
    ValueError, match=rf'big: the prepared data needs {need / 1e6:.1f} MB of memory but only .* --stream'
  ):
    data.prepare(raw, 'big')


def test_large_loads_report_memory_and_progress(tmp_path, monkeypatch):
  monkeypatch.setattr(data, 'PROGRESS_BYTES', 0)
  x, y = _features()
  np.save(tmp_path / 'x.npy', x.astype(np.float32))
  np.save(tmp_path / 'y.npy', y)
  raw = data.load('npy', data_path=str(tmp_path / 'x.npy'), labels_path=str(tmp_path / 'y.npy'))
  lines = []
  data.prepare(raw, 'emb', progress=lines.append)
  assert re.match(
    r'emb: 500 rows x 7 features, float32 in the file, kept as float32; needs [\d.]+ MB of memory', lines[0]
  )
  assert re.match(r'reading: 500 / 500 rows \(100%\), [\d,]+ MB/s', lines[-1])


def test_train_from_npy_files_on_the_command_line(tmp_path):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel

  x, y = _features(300, 6)
  np.save(tmp_path / 'x.npy', x.astype(np.float32))
  np.save(tmp_path / 'y.npy', y)
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.train',
      '--dataset=npy',
      f'--data_path={tmp_path / "x.npy"}',
      f'--labels_path={tmp_path / "y.npy"}',
      f'--workdir={tmp_path / "run"}',
      '--epochs=2',
      '--quiet',
    ],
    cwd=str(pathlib.Path(__file__).resolve().parents[2]),
    capture_output=True,
    text=True,
    timeout=240,
    check=False,
  )
  assert out.returncode == 0, out.stderr
  p = np.load(tmp_path / 'run' / 'params.npz')
  assert p['W'].shape == (3, 6)


# ------------------------------------------------------------------ held-out test files


def _write(fmt, folder, stem, x, y, w=None):
  """Writes `x`, `y` (and weights `w`) in format `fmt`; returns `load`'s keyword arguments for it."""
  if fmt == 'npz':
    arrays = {'x': x, 'y': y} | ({'w': w} if w is not None else {})
    np.savez(folder / f'{stem}.npz', **arrays)
    return {'data_path': str(folder / f'{stem}.npz')}
  if fmt == 'npy':
    np.save(folder / f'{stem}_x.npy', x)
    np.save(folder / f'{stem}_y.npy', y)
    return {'data_path': str(folder / f'{stem}_x.npy'), 'labels_path': str(folder / f'{stem}_y.npy')}
  cols = [f'f{j}' for j in range(x.shape[1])] + ['label'] + (['weight'] if w is not None else [])
  lines = [','.join(cols)]
  for i in range(len(x)):
    cells = [repr(float(v)) for v in x[i]] + [str(y[i])] + ([repr(float(w[i]))] if w is not None else [])
    lines.append(','.join(cells))
  (folder / f'{stem}.csv').write_text('\n'.join(lines) + '\n')
  return {'data_path': str(folder / f'{stem}.csv'), 'target_column': 'label'}


def _as_test(kwargs):
  return {'test_path': kwargs['data_path']} | (
    {'test_labels_path': kwargs['labels_path']} if 'labels_path' in kwargs else {}
  )


@pytest.mark.parametrize('fmt', ['npz', 'npy', 'csv'])
def test_test_file_is_the_whole_test_split_standardized_with_training_statistics(tmp_path, fmt):
  x, y = _features(200, 4, seed=1)
  x_test, y_test = _features(50, 4, seed=2)
  train = _write(fmt, tmp_path, 'train', x.astype(np.float32), y)
  test = _write(fmt, tmp_path, 'test', x_test.astype(np.float32), y_test)
  raw = data.load(fmt, **train, **_as_test(test))
  ds = data.prepare(raw, fmt, val_fraction=0.0, seed=3)
  assert len(ds.x_val) == 0 and len(ds.x_train) == 200 and len(ds.x_test) == 50
  x32 = x.astype(np.float32).astype(np.float64)
  shift, scale = x32.mean(0), x32.std(0)
  np.testing.assert_allclose(ds.x_test, (x_test.astype(np.float32) - shift) / scale, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(ds.y_test, y_test)


def test_npz_may_hold_its_own_test_split(tmp_path):
  x, y = _features(100, 3)
  np.savez(tmp_path / 'd.npz', x=x, y=y, x_test=x[:10] + 1, y_test=y[:10])
  ds = data.prepare(data.load('npz', data_path=str(tmp_path / 'd.npz')), 'npz', val_fraction=0.0)
  assert len(ds.x_test) == 10 and len(ds.x_train) == 100
  np.testing.assert_array_equal(ds.y_test, y[:10])
  np.savez(tmp_path / 'd.npz', x=x, y=y, x_test=x[:10])
  with pytest.raises(ValueError, match=r'd.npz: has one of x_test and y_test but not the other'):
    data.load('npz', data_path=str(tmp_path / 'd.npz'))


def test_test_file_with_other_features_labels_or_dtype_kind_is_refused(tmp_path):
  x, y = _features(60, 4)
  train = _write('npz', tmp_path, 'train', x, y)
  cases = {
    'width': (x[:, :3], y, r'test.npz: 3 features, but .*train.npz has 4'),
    'labels': (x, np.where(y == 2, 7, y), r'test.npz: label 7 does not occur in the training labels'),
    'x_kind': (
      np.round(x).astype(np.int32),
      y,
      r'test.npz: features are integers, but .*train.npz holds floats',
    ),
    'y_kind': (x, y + 0.5, r'test.npz: holds real targets, but .*train.npz holds class labels'),
    'text': (
      x,
      np.array(['a', 'b', 'c'])[y],
      r'test.npz: holds text labels, but .*train.npz holds class',
    ),
  }
  for xt, yt, match in cases.values():
    test = _write('npz', tmp_path, 'test', xt, yt)
    with pytest.raises(ValueError, match=match):
      data.load('npz', **train, **_as_test(test))
  npy_train = _write('npy', tmp_path, 'tr', x.astype(np.float32), y)
  with pytest.raises(ValueError, match=r'needs --labels_path.*--test_labels_path'):
    data.load('npy', **npy_train, test_path=npy_train['data_path'])
  with pytest.raises(ValueError, match=r'--test_path needs a file dataset'):
    data.load('digits', test_path=train['data_path'])


# ------------------------------------------------------------------ text labels, delimiters


IRIS_LIKE = [
  ('5.1', '3.5', 'setosa'),
  ('4.9', '3.0', 'setosa'),
  ('7.0', '3.2', 'versicolor'),
  ('6.3', '3.3', 'virginica'),
  ('5.8', '2.7', 'virginica'),
]


@pytest.mark.parametrize('delimiter', [',', ';', '\t'])
@pytest.mark.parametrize('given', [False, True])
def test_csv_text_labels_and_delimiters(tmp_path, delimiter, given):
  lines = [delimiter.join(('sepal_length', 'sepal_width', 'species'))] + [
    delimiter.join(r) for r in IRIS_LIKE
  ]
  path = tmp_path / 'iris.csv'
  path.write_text('\n'.join(lines) + '\n')
  raw = data.load('csv', data_path=str(path), delimiter=delimiter if given else None)
  assert raw.class_names == ('setosa', 'versicolor', 'virginica') and raw.num_classes == 3
  np.testing.assert_array_equal(raw.y, [0, 0, 1, 2, 2])
  np.testing.assert_array_equal(raw.x, [[float(a), float(b)] for a, b, _ in IRIS_LIKE])
  headerless = tmp_path / 'bare.csv'
  headerless.write_text('\n'.join(lines[1:]) + '\n')
  assert data.load('csv', data_path=str(headerless)).x.shape == (5, 2)


def test_csv_with_decimal_commas_and_semicolons_is_detected():
  assert detect_delimiter(['1,5;2,25;0', '3,0;4,5;1']) == ';'
  assert detect_delimiter(['1,2,0', '3,4,1']) == ','
  assert detect_delimiter(['a\tb', '1\t2']) == '\t'


def test_npz_text_labels_and_a_test_file_numbered_by_the_training_names(tmp_path):
  x, y = _features(30, 2)
  names = np.array(['cat', 'dog', 'emu'])
  train = _write('npz', tmp_path, 'train', x, names[y])
  test = _write('npz', tmp_path, 'test', x[:4], np.array(['emu', 'emu', 'dog', 'emu']))  # no 'cat' here
  raw = data.load('npz', **train, **_as_test(test))
  assert raw.class_names == ('cat', 'dog', 'emu')
  np.testing.assert_array_equal(raw.y, y)
  np.testing.assert_array_equal(raw.test[1], [2, 2, 1, 2])
  bad = _write('npz', tmp_path, 'bad', x[:2], np.array(['cat', 'fox']))
  with pytest.raises(ValueError, match=r"bad.npz: label 'fox' does not occur in the training labels"):
    data.load('npz', **train, **_as_test(bad))


# ------------------------------------------------------------------ sample and class weights


def test_sample_weights_are_split_with_their_rows(tmp_path):
  n = 120
  x = np.column_stack([np.arange(n, dtype=np.float64), np.random.default_rng(0).normal(size=n)])
  y = np.arange(n) % 3
  w = 1.0 + np.arange(n)  # the weight of row i is i + 1, and x[i, 0] is i
  for fmt in ('npz', 'csv'):
    kwargs = _write(fmt, tmp_path, 'w', x, y, w)
    if fmt == 'csv':
      kwargs['weight_column'] = 'weight'
    ds = data.prepare(data.load(fmt, **kwargs), fmt, preprocess='none', seed=2)
    assert ds.num_features == 2  # the weight column is not a feature
    for s in ('train', 'val', 'test'):
      np.testing.assert_array_equal(getattr(ds, f'w_{s}'), getattr(ds, f'x_{s}')[:, 0] + 1)
  ds = data.prepare(from_arrays(x, y, sample_weight=w), 'mine', preprocess='none')
  np.testing.assert_array_equal(ds.w_train, ds.x_train[:, 0] + 1)
  plain = data.prepare(from_arrays(x, y), 'mine')
  assert plain.w_train is None and plain.w_val is None and plain.w_test is None
  no_val = data.prepare(from_arrays(x, y, sample_weight=w), 'mine', val_fraction=0.0)
  assert no_val.w_val is None and len(no_val.w_train) == len(no_val.x_train)  # an empty split weighs nothing


def test_balanced_class_weights_match_scikit_learn():
  from sklearn.utils.class_weight import compute_class_weight  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  y = rng.choice(4, size=400, p=[0.6, 0.25, 0.1, 0.05])
  x = rng.normal(size=(400, 3))
  w = rng.uniform(0.5, 2.0, 400)
  ds = data.prepare(from_arrays(x, y, sample_weight=w), 'imb', class_weight='balanced', seed=1)
  ref = compute_class_weight('balanced', classes=np.unique(ds.y_train), y=ds.y_train)
  raw_w = {s: w[data.split_indices(400, seed=1)[s]] for s in ('train', 'val', 'test')}
  for s in ('train', 'val', 'test'):
    y_s = getattr(ds, f'y_{s}')
    np.testing.assert_allclose(getattr(ds, f'w_{s}'), raw_w[s] * ref[y_s], rtol=1e-6)
  with pytest.raises(ValueError, match=r"class_weight='balanced' needs class labels"):
    data.prepare(data.linreg(50, 2), 'linreg', class_weight='balanced')


@pytest.mark.parametrize(
  'w, match',
  [
    (np.array([1.0, -0.5, 1.0, 1.0]), r'sample weights: must be finite and >= 0; index 1 holds -0.5'),
    (np.array([1.0, 1.0, np.nan, 1.0]), r'sample weights: must be finite and >= 0; index 2 holds nan'),
    (np.zeros(4), r'sample weights: all 4 are 0'),
    (np.ones(3), r'sample weights: must be \[N\] = \[4\], got shape \(3,\)'),
  ],
)
def test_bad_sample_weights_are_refused(tmp_path, w, match):
  x, y = np.arange(8.0).reshape(4, 2), np.array([0, 1, 0, 1])
  with pytest.raises(ValueError, match='arrays: ' + match):
    from_arrays(x, y, sample_weight=w)
  np.savez(tmp_path / 'd.npz', x=x, y=y, w=w)
  with pytest.raises(ValueError, match='d.npz: ' + match):
    data.load('npz', data_path=str(tmp_path / 'd.npz'))


def test_train_on_a_csv_of_text_labels_with_a_test_file_and_balanced_weights(tmp_path):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  for stem, n in (('train', 150), ('test', 40)):
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 2)) + 3 * np.eye(3)[y][:, :2]
    rows = [
      f'{a:.4f};{b:.4f};{("setosa", "versicolor", "virginica")[c]}' for (a, b), c in zip(x, y, strict=True)
    ]
    (tmp_path / f'{stem}.csv').write_text('a;b;species\n' + '\n'.join(rows) + '\n')
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.train',
      '--dataset=csv',
      f'--data_path={tmp_path / "train.csv"}',
      f'--test_path={tmp_path / "test.csv"}',
      '--target_column=species',
      '--val_fraction=0',
      '--class_weight=balanced',
      f'--workdir={tmp_path / "run"}',
      '--epochs=5',
      '--quiet',
    ],
    cwd=str(pathlib.Path(__file__).resolve().parents[2]),
    capture_output=True,
    text=True,
    timeout=240,
    check=False,
  )
  assert out.returncode == 0, out.stderr
  assert float(out.stdout.split('test_accuracy: ')[1].split()[0]) > 0.7
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert summary['class_names'] == ['setosa', 'versicolor', 'virginica']


def test_a_test_csv_whose_header_names_other_features_is_refused_by_name(tmp_path):
  # Features are matched by position: a test file with the training file's columns in another order
  # (d,c,b,a against a,b,c,d) scored every row on the wrong weights, at a third of the accuracy.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 4))
  y = np.arange(30) % 3

  def write(name, header, cols):
    rows = '\n'.join(','.join([*(f'{v:.4f}' for v in x[i, cols]), str(y[i])]) for i in range(30))
    (tmp_path / name).write_text(header + '\n' + rows + '\n')
    return str(tmp_path / name)

  train = write('train.csv', 'a,b,c,d,label', [0, 1, 2, 3])
  load = lambda test: data.load('csv', data_path=train, test_path=test)  # the target: the last column
  raw = load(write('same.csv', 'a,b,c,d,label', [0, 1, 2, 3]))
  np.testing.assert_allclose(raw.test[0], np.round(x, 4))
  assert raw.extra['feature_names'] == ('a', 'b', 'c', 'd')
  moved = write('moved.csv', 'd,c,b,a,label', [3, 2, 1, 0])
  order = (
    r"moved\.csv: its feature columns are .*train\.csv's in another order \(d, c, b, a against a, b, c, d\)"
  )
  with pytest.raises(ValueError, match=order + '; features are matched by position'):
    load(moved)
  renamed = write('renamed.csv', 'a,b,z,d,label', [0, 1, 2, 3])
  with pytest.raises(
    ValueError, match=r"renamed\.csv: feature column 3 is named 'z', but .*train\.csv names it"
  ):
    load(renamed)
  unnamed = tmp_path / 'unnamed.csv'  # no header: matched by position, as before
  unnamed.write_text('\n'.join(','.join([*(f'{v:.4f}' for v in x[i]), str(y[i])]) for i in range(30)) + '\n')
  np.testing.assert_allclose(load(str(unnamed)).test[0], np.round(x, 4))


@pytest.mark.parametrize('narrow', ['float16', 'bfloat16'])
def test_half_precision_splits_train_like_float32(narrow):
  from linear_jax.optim import config  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  dt = np.dtype(np.float16) if narrow == 'float16' else data.chunks.bfloat16()
  raw = data.blobs(300, 4, 3, spread=0.8, seed=3)
  cfg = config.TrainConfig(loss='softmax', epochs=5, learning_rate=0.1)
  accs = {}
  for name, x in (('narrow', raw.x.astype(dt)), ('wide', raw.x.astype(dt).astype(np.float32))):
    ds = data.prepare(from_arrays(x, raw.y), name, seed=1)
    assert ds.x_train.dtype == (dt if name == 'narrow' else np.float32)
    accs[name] = train.evaluate(cfg, ds, train.fit(cfg, ds).params)['test_accuracy']
  assert abs(accs['narrow'] - accs['wide']) <= 0.05 and accs['wide'] > 0.8


@pytest.mark.parametrize(
  'make, match',
  [
    (lambda: data.blobs(50, 2, 3, spread=float('nan')), r'spread must be a finite number >= 0, got nan'),
    (lambda: data.blobs(50, 2, 3, spread=-1.0), r'spread must be a finite number >= 0, got -1.0'),
    (lambda: data.blobs(50, 0, 3), r'num_features must be a whole number >= 1, got 0'),
    (lambda: data.blobs(0, 2, 3), r'num_examples must be a whole number >= 1, got 0'),
    (lambda: data.blobs(50, 2, 0), r'num_classes must be a whole number >= 2, got 0'),  # NumPy: high <= 0
    (lambda: data.blobs(50, 2, 3, seed=-1), r'seed must be an integer in \[0, 2\*\*32\), got -1'),
    (lambda: data.linreg(50, 2, noise=float('inf')), r'noise must be a finite number >= 0'),
    (lambda: data.binary2d(2.5), r'num_examples must be a whole number >= 1, got 2.5'),
  ],
)
def test_the_generators_refuse_arguments_out_of_range_by_name(make, match):
  # Each made data silently (a NaN spread, no features) or failed in NumPy's words.
  with pytest.raises(ValueError, match=match):
    make()


def test_params_to_raw_checks_its_shapes_and_refuses_a_zero_scale():
  w, b = np.ones((2, 3)), np.zeros(2)
  with pytest.raises(ValueError, match=r'W must be \[C, D\] and b \[C\], got shapes \[2, 3\] and \[3\]'):
    data.params_to_raw(w, np.zeros(3), np.zeros(3), np.ones(3))
  with pytest.raises(ValueError, match=r'shift must be one number or \[D\] = \[3\], got shape \[2\]'):
    data.params_to_raw(w, b, np.zeros(2), np.ones(3))
  with pytest.raises(ValueError, match=r'scale must hold finite numbers > 0'):  # W was infinite
    data.params_to_raw(w, b, np.zeros(3), np.array([1.0, 0.0, 1.0]))
  w_raw, b_raw = data.params_to_raw(w, b, np.full(3, 2.0), np.full(3, 4.0))
  np.testing.assert_allclose(w_raw, w / 4)
  np.testing.assert_allclose(b_raw, -1.5 * np.ones(2))  # b − (W / scale) · shift


def test_an_mse_in_targets_of_1e19_is_the_number_not_inf():
  """Targets spread 2.3e19: scale² (5e38) overflows float32 where the MSE itself (1e36) does not, and
  train_mse was reported inf (null in summary.json)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 2))
  y = 1e19 * (x @ np.array([1.0, 2.0]) + 0.1 * rng.normal(size=200))
  ds = data.prepare(data.Raw(x=x, y=y, kind='real'), 'big', 0.0, 0.0, seed=0)
  mse = records.in_target_units(ds, {'train_mse': np.float32(0.0047), 'train_mae': np.float32(0.05)})
  assert np.isfinite(mse['train_mse']) and mse['train_mse'] == pytest.approx(
    0.0047 * ds.target_scale**2, rel=1e-5
  )
  assert mse['train_mae'] == pytest.approx(0.05 * ds.target_scale, rel=1e-6)
