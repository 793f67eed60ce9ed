"""Every data path keeps one contract: whatever `factory.make` returns answers as the maths says.

Each implementation (resident, data-parallel under shard_map and pmap, streamed
in blocks, streamed with each block split over a mesh) is asked the same
questions on the same weighted data, and every answer is compared with an
independent computation: `lj.objective` and `jax.value_and_grad` on the whole
split, NumPy's argmax, a plain gradient step, f* of the resident path. One
CPU device here; tests/datapath/parallel_test.py runs the same paths on eight
simulated devices and two processes, where the lockstep path lives.
"""

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linear_jax as lj
from linear_jax.data import datasets as data
from linear_jax.datapath import factory
from linear_jax.datapath import parallel_path
from linear_jax.datapath import resident
from linear_jax.datapath import streamed_path
from linear_jax.optim import config
from linear_jax.optim import step

PATHS = {
  'resident': ({}, resident.Resident),
  'shard_map': ({'parallel': 'shard_map', 'num_devices': 1}, parallel_path.DataParallel),
  'pmap': ({'parallel': 'pmap', 'num_devices': 1}, parallel_path.DataParallel),
  'streamed': ({'stream': True, 'block_rows': 37}, streamed_path.Streamed),
  'streamed_shard_map': ({'stream': True, 'block_rows': 37, 'parallel': 'shard_map'}, streamed_path.Streamed),
}


@pytest.fixture(scope='module')
def dataset():
  ds = data.prepare(data.blobs(203, 5, 3, seed=1), 'blobs', 0.2, 0.2, dtype=np.float64, seed=0)
  rng = np.random.default_rng(0)
  weights = {f'w_{s}': rng.uniform(0.2, 3.0, len(getattr(ds, f'x_{s}'))) for s in ('train', 'val', 'test')}
  return dataclasses.replace(ds, **weights)


def _path(name, dataset, **overrides):
  fields, _ = PATHS[name]
  cfg = config.TrainConfig(loss='softmax', reg=1e-2, dtype='float64', **{**fields, **overrides})
  return cfg, factory.make(cfg, dataset)


def _params(dataset, seed=3):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return lj.Params(
    W=0.3 * jax.random.normal(k1, (3, dataset.num_features), jnp.float64),
    b=0.1 * jax.random.normal(k2, (3,), jnp.float64),
  )


def _reference(dataset, split, params, reg=1e-2):
  """`(objective, gradient)` of the weighted objective on the whole split, by autodiff."""
  x, y = getattr(dataset, f'x_{split}'), getattr(dataset, f'y_{split}')
  w = getattr(dataset, f'w_{split}')
  f = lambda p: lj.objective(p, x, y, loss='softmax', reg=reg, penalty='l2', mask=w)
  return jax.value_and_grad(f)(params)


@pytest.mark.parametrize('name', PATHS)
def test_make_is_the_one_choice_of_the_implementation(name, dataset):
  _, path = _path(name, dataset)
  assert type(path) is PATHS[name][1]
  assert path.streamed == (type(path) is streamed_path.Streamed)
  assert path.num_train == len(dataset.x_train) and path.has('test')
  record = path.record()
  assert record['num_processes'] == 1 and isinstance(record['data_order'], str)
  assert record['num_devices'] == 1  # one device here, with or without --parallel


@pytest.mark.parametrize('name', ['resident', 'shard_map', 'streamed_shard_map'])
def test_a_checkpoint_of_another_device_count_is_refused(name, dataset):
  # Resumed on 2 devices, a run stopped on 4 mixed 4- and 2-device epochs: neither refused nor bit-exact.
  _, path = _path(name, dataset)
  path.check_written_by('c.npz', {'num_processes': 1, 'num_devices': 1})
  path.check_written_by('c.npz', {'num_processes': 1})  # written before the count was kept: as now
  with pytest.raises(ValueError, match=r'c\.npz: written by a run whose steps were split over 4 device\(s\), '
                     r'and this run splits them over 1: .*Resume with --num_devices=4\.'):  # fmt: skip
    path.check_written_by('c.npz', {'num_processes': 1, 'num_devices': 4})


@pytest.mark.parametrize('name', PATHS)
def test_evaluate_is_the_weighted_objective_and_the_accuracy_of_each_split(name, dataset):
  cfg, path = _path(name, dataset)
  params = _params(dataset)
  for split in ('train', 'val', 'test'):
    out = jax.device_get(path.evaluate(params, step.hparams(cfg), split))
    value, _ = _reference(dataset, split, params)
    np.testing.assert_allclose(out['loss'], value, rtol=1e-12, err_msg=split)
    x, y = getattr(dataset, f'x_{split}'), getattr(dataset, f'y_{split}')
    accuracy = np.mean(np.argmax(x @ np.asarray(params.W).T + np.asarray(params.b), 1) == y)
    np.testing.assert_allclose(out['accuracy'], accuracy, rtol=1e-6, err_msg=split)  # counted in float32


@pytest.mark.parametrize('name', PATHS)
def test_objective_and_gradient_are_autodiff_of_the_whole_split(name, dataset):
  cfg, path = _path(name, dataset)
  params = _params(dataset)
  value, grad = path.objective(params, step.hparams(cfg))
  ref_value, ref_grad = _reference(dataset, 'train', params)
  np.testing.assert_allclose(value, ref_value, rtol=1e-12)
  np.testing.assert_allclose(grad.W, ref_grad.W, rtol=1e-9, atol=1e-13)
  np.testing.assert_allclose(grad.b, ref_grad.b, rtol=1e-9, atol=1e-13)
  largest = max(np.abs(ref_grad.W).max(), np.abs(ref_grad.b).max())
  np.testing.assert_allclose(path.grad_norm(params, step.hparams(cfg)), largest, rtol=1e-9)


@pytest.mark.parametrize('name', PATHS)
def test_a_full_batch_epoch_is_one_gradient_step(name, dataset):
  cfg, path = _path(name, dataset, batch_size=0, learning_rate=0.5)
  hp = step.hparams(cfg)
  params = _params(dataset)
  _, opt_state = step.init_state(cfg, dataset.num_features, 3, hp, path.steps)
  new, _, values = path.epoch(params, opt_state, jax.random.PRNGKey(0), hp)
  ref_value, ref_grad = _reference(dataset, 'train', params)
  assert path.steps == 1 and np.shape(values) == (1,)
  np.testing.assert_allclose(values[0], ref_value, rtol=1e-12)
  np.testing.assert_allclose(new.W, params.W - 0.5 * ref_grad.W, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(new.b, params.b - 0.5 * ref_grad.b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize('name', PATHS)
def test_a_mini_batch_epoch_takes_its_steps_and_lowers_the_objective(name, dataset):
  cfg, path = _path(name, dataset, batch_size=16, learning_rate=0.2)
  hp = step.hparams(cfg)
  params = _params(dataset)
  _, opt_state = step.init_state(cfg, dataset.num_features, 3, hp, path.steps)
  new, _, values = path.epoch(params, opt_state, jax.random.PRNGKey(0), hp)
  assert path.steps == -(-len(dataset.x_train) // 16) and np.shape(values) == (path.steps,)
  assert np.all(np.isfinite(values))
  assert _reference(dataset, 'train', new)[0] < _reference(dataset, 'train', params)[0]


@pytest.mark.parametrize('name', [n for n in PATHS if n != 'pmap'])
def test_minimize_reaches_the_optimum_of_the_resident_path(name, dataset):
  cfg, path = _path(name, dataset, optimizer='lbfgs')
  hp = step.hparams(cfg)
  start = _params(dataset)
  params, info = path.minimize(start, hp, 1e-9, 500)
  _, reference = _path('resident', dataset, optimizer='lbfgs')
  ref_params, ref_info = reference.minimize(start, hp, 1e-9, 500)
  assert bool(info.converged) and bool(ref_info.converged)
  np.testing.assert_allclose(float(info.value), float(ref_info.value), rtol=1e-12)
  np.testing.assert_allclose(params.W, ref_params.W, atol=1e-6)
  np.testing.assert_allclose(float(info.value), _reference(dataset, 'train', params)[0], rtol=1e-12)


def test_pmap_has_no_lbfgs(dataset):
  with pytest.raises(ValueError, match='--optimizer=lbfgs has no --parallel=pmap'):
    _path('pmap', dataset, optimizer='lbfgs')


@pytest.mark.parametrize('name', PATHS)
def test_check_names_the_split_the_row_and_the_column_of_a_bad_value(name, dataset):
  x = np.array(dataset.x_train)
  x[57, 2] = np.nan
  _, path = _path(name, dataclasses.replace(dataset, x_train=x))
  with pytest.raises(
    ValueError, match=r'blobs train split: 1 non-finite feature value\(s\); first at example 57'
  ):
    path.check()
  _, clean = _path(name, dataset)
  clean.check()  # the same path on good rows says nothing


def test_resident_consumers_never_stream(dataset):
  cfg = config.TrainConfig(stream=True, block_rows=37)
  assert type(factory.make(cfg, dataset)) is streamed_path.Streamed
  held = factory.make(cfg, dataset, resident=True)
  assert type(held) is resident.Resident
  x, y = held.resident_split('train')
  assert x.shape == dataset.x_train.shape and x.dtype == jnp.float32 and np.array_equal(y, dataset.y_train)


@pytest.mark.parametrize('bias_trick', [False, True])
def test_a_prepared_dataset_held_resident_is_standardized_like_its_blocks(tmp_path, bias_trick):
  """Sweeps, paths and search hold a `stream.prepare`d dataset on the device whole, through the resident
  path: its rows there are the standardized rows its streamed blocks would be (the bias column too)."""
  from linear_jax.datapath import stream  # pylint: disable=import-outside-toplevel

  raw = data.blobs(150, 5, 3, seed=2)
  np.save(tmp_path / 'x.npy', (raw.x * 50.0 + 1000.0).astype(np.float32))  # far from standardized
  mapped = data.Raw(np.load(tmp_path / 'x.npy', mmap_mode='r', allow_pickle=False), raw.y, 'class', 3)
  ds = stream.prepare(mapped, 'mapped', val_fraction=0.2, test_fraction=0.1)
  cfg = config.TrainConfig(epochs=4, batch_size=16, bias_trick=bias_trick)
  path = factory.make(cfg, ds, resident=True)
  assert type(path) is resident.Resident and type(factory.make(cfg, ds)) is streamed_path.Streamed
  for split, (x, _) in path.arrays.items():
    want = (np.asarray(getattr(ds, f'x_{split}'), np.float64) - ds.shift) / ds.scale
    np.testing.assert_allclose(np.asarray(x)[:, : want.shape[1]], want, rtol=1e-5, atol=1e-5)
    if bias_trick:
      np.testing.assert_array_equal(np.asarray(x)[:, -1], 1.0)
  np.testing.assert_array_equal(path.resident_split('val')[0], path.arrays['val'][0])


def test_a_one_process_in_memory_fit_never_enters_the_other_paths_code(dataset, tmp_path):
  """What one process agrees with itself on is answered in `base`, and an in-memory split never asks
  how a file's raw rows are standardized: a reader following such a fit (a checkpoint and resume
  included) skips `multihost`, `standardize` and the streaming and parallel modules."""
  entered = set()  # (file under linear_jax/, function)

  def profile(frame, event, arg):
    del arg
    name = frame.f_code.co_filename.replace('\\', '/')
    if event == 'call' and 'linear_jax/' in name:
      entered.add((name.rsplit('linear_jax/', 1)[-1], frame.f_code.co_name))

  cfg = config.TrainConfig(epochs=2, batch_size=32, learning_rate='auto')
  before = sys.getprofile()
  sys.setprofile(profile)
  try:
    first = lj.fit(cfg, dataset, workdir=str(tmp_path), resume=True)
    again = lj.fit(cfg, dataset, workdir=str(tmp_path), resume=True)  # from the checkpoint
  finally:
    sys.setprofile(before)
  assert again.already_done and again.resumed_from == len(first.history) == 2
  # Every point where processes agree was reached, and answered in base.py.
  for point in ('agreed', 'barrier', 'together', 'check_same_view', 'check_written_by', 'any_process'):
    assert ('datapath/base.py', point) in entered, point
  files = {f for f, _ in entered}
  for other in ('multihost', 'standardize', 'stream', 'streamed_path', 'parallel'):
    assert f'datapath/{other}.py' not in files, other
