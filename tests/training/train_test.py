"""Tests of linear_jax.train: accuracy figures, exactness, resume, divergence."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import linear_model

import linear_jax as lj
from linear_jax.data import datasets as data
from linear_jax.data.build import from_arrays
from linear_jax.maths import losses
from linear_jax.optim import config
from linear_jax.optim import results
from linear_jax.optim import step
from linear_jax.runs import experiment
from linear_jax.training import checkpoint
from linear_jax.training import divergence
from linear_jax.training import train


@pytest.fixture(scope='module')
def digits():
  return data.prepare(data.load('digits'), 'digits')


def _tiny(kind='class', n=40, seed=0):
  raw = {
    'class': data.blobs(n, 3, 3, seed=seed),
    'binary': data.binary2d(n, seed=seed),
    'real': data.linreg(n, 3, seed=seed),
  }[kind]
  return data.prepare(raw, kind, val_fraction=0.2, test_fraction=0.2, seed=seed)


def _test_acc(cfg, ds, params):
  return train.evaluate(cfg, ds, params)['test_accuracy']


def test_default_run_reaches_95_percent_on_digits(digits):
  cfg = config.TrainConfig()
  result = train.fit(cfg, digits)
  assert result.params.W.dtype == jnp.float32  # training defaults to float32
  assert _test_acc(cfg, digits, result.params) >= 0.95


def test_softmax_within_one_point_of_sklearn_logistic_regression(digits):
  cfg = config.TrainConfig(loss='softmax', reg=1e-4, epochs=40)
  ours = _test_acc(cfg, digits, train.fit(cfg, digits).params)
  ref = linear_model.LogisticRegression(max_iter=5000).fit(digits.x_train, digits.y_train)
  assert ours >= ref.score(digits.x_test, digits.y_test) - 0.01


def test_svm_at_least_as_good_as_sgdclassifier_hinge(digits):
  cfg = config.TrainConfig(loss='svm', reg=0.01, epochs=60, learning_rate=0.03, schedule='cosine')
  ours = _test_acc(cfg, digits, train.fit(cfg, digits).params)
  ref = np.mean(
    [
      linear_model.SGDClassifier(loss='hinge', random_state=s)
      .fit(digits.x_train, digits.y_train)
      .score(digits.x_test, digits.y_test)
      for s in range(5)
    ]
  )
  assert ours >= ref


def test_l2_regression_recovers_known_w():
  raw = data.linreg(800, 4, noise=0.01, seed=5)
  ds = data.prepare(raw, 'linreg', preprocess='none', seed=5)
  cfg = config.TrainConfig(loss='l2', reg=0.0, learning_rate=0.05, epochs=60, batch_size=32)
  w, b = train.raw_params(train.fit(cfg, ds).params, ds)
  np.testing.assert_allclose(w, raw.extra['W'], atol=0.01)
  np.testing.assert_allclose(b, raw.extra['b'], atol=0.01)


def test_diabetes_r2_matches_least_squares():
  ds = data.prepare(data.load('diabetes'), 'diabetes', seed=0)
  cfg = config.TrainConfig(loss='l2', reg=0.0, learning_rate=0.1, epochs=400, batch_size=0)  # full batch
  params = train.fit(cfg, ds).params
  pred = np.asarray(lj.scores(params, ds.x_test))[:, 0]
  r2 = 1 - np.sum((ds.y_test - pred) ** 2) / np.sum((ds.y_test - ds.y_test.mean()) ** 2)
  ref = linear_model.LinearRegression().fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
  assert abs(r2 - ref) < 0.01


def test_gradient_sources_give_the_same_trajectory():
  ds = _tiny()
  finals = []
  for grad in lj.GRAD_SOURCES:
    cfg = config.TrainConfig(loss='svm', grad=grad, epochs=5, batch_size=8, dtype='float64')
    finals.append(train.fit(cfg, ds).params)
  for p in finals[1:]:
    np.testing.assert_allclose(p.W, finals[0].W, rtol=1e-10, atol=1e-12)


def test_epoch_sees_every_example_once_with_a_partial_last_batch():
  ds = _tiny(n=30)  # 18 training examples, batches of 4: 4 + 4 + 4 + 4 + 2
  cfg = config.TrainConfig(loss='softmax', batch_size=4, dtype='float64', reg=0.01, learning_rate=0.3)
  x, y = jnp.asarray(ds.x_train, jnp.float64), jnp.asarray(ds.y_train)
  n = len(x)
  assert n % 4 != 0
  hp = step.hparams(cfg)
  steps, _ = step.steps_per_epoch(cfg, n)
  params, opt_state = step.init_state(cfg, 3, 3, hp, steps)
  key = jax.random.PRNGKey(9)
  got, _, values = jax.jit(step.make_epoch_fn(cfg, n))(params, opt_state, x, y, key, hp)
  order = np.asarray(jax.random.permutation(key, n))
  p = params
  for s in range(steps):  # plain SGD on the unpadded batches
    idx = order[4 * s : 4 * s + 4]
    g = lj.analytic_grad(p, x[idx], y[idx], loss='softmax', reg=0.01)
    p = jax.tree.map(lambda a, b: a - 0.3 * b, p, g)
  assert values.shape == (steps,)
  np.testing.assert_allclose(got.W, p.W, rtol=1e-12)
  np.testing.assert_allclose(got.b, p.b, rtol=1e-12)


def test_no_recompile_after_the_first_epoch_or_for_new_hyperparameters():
  ds = _tiny()
  cfg = config.TrainConfig(batch_size=8)
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  steps, _ = step.steps_per_epoch(cfg, len(x))
  hp = step.hparams(cfg)
  params, opt_state = step.init_state(cfg, 3, 3, hp, steps)
  epoch = jax.jit(step.make_epoch_fn(cfg, len(x)))
  for e in range(3):
    hp_e = hp._replace(learning_rate=jnp.float32(0.1 * (e + 1)), reg=jnp.float32(1e-3 * e))
    params, opt_state, _ = epoch(params, opt_state, x, y, jax.random.PRNGKey(e), hp_e)
  assert epoch._cache_size() == 1


def test_fits_with_new_hyperparameters_share_one_compiled_program():
  # decay_epochs=3.0: a structure no other test compiles, so the first fit adds exactly its programs.
  ds = _tiny()
  cfg = config.TrainConfig(batch_size=8, epochs=2, decay_epochs=3.0, schedule='step', optimizer='momentum')
  programs = lambda: (step._epoch._cache_size(), step._eval._cache_size())  # pylint: disable=protected-access
  before = programs()
  first = train.fit(cfg, ds)
  sizes = programs()
  assert sizes[0] == before[0] + 1
  other = dataclasses.replace(
    cfg, learning_rate=0.03, reg=1e-2, momentum=0.5, seed=4, patience=3, init_scale=0.1
  )
  second = train.fit(other, ds)
  assert programs() == sizes
  # The shared program ran `other`'s values: it equals `other`'s epochs traced afresh.
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  steps, _ = step.steps_per_epoch(other, len(x))
  hp = step.hparams(other)
  params, opt_state = step.init_state(other, 3, 3, hp, steps)
  epoch = jax.jit(step.make_epoch_fn(other, len(x)))
  for e in range(other.epochs):
    params, opt_state, _ = epoch(params, opt_state, x, y, jax.random.fold_in(jax.random.PRNGKey(4), e), hp)
  np.testing.assert_allclose(second.params.W, params.W, rtol=1e-6, atol=1e-7)
  assert not np.allclose(first.params.W, second.params.W)


@pytest.mark.parametrize(
  'overrides',
  [
    {'loss': 'svm', 'optimizer': 'momentum', 'schedule': 'step'},
    {'loss': 'softmax', 'optimizer': 'nesterov', 'schedule': 'exponential', 'penalty': 'l1'},
    {
      'loss': 'softmax',
      'optimizer': 'adam',
      'schedule': 'inverse_time',
      'grad': 'autodiff',
      'learning_rate': 0.05,
    },
    {'loss': 'svm', 'optimizer': 'sgd', 'schedule': 'cosine', 'grad': 'custom_vjp', 'bias_trick': True},
    {'loss': 'hinge', 'kind': 'binary'},
    {'loss': 'logistic', 'kind': 'binary', 'batch_size': 0},
    {'loss': 'sigmoid_l2', 'kind': 'binary', 'learning_rate': 1.0},
    {'loss': 'l2', 'kind': 'real', 'learning_rate': 0.02},
    {'loss': 'l1', 'kind': 'real', 'penalty': 'l1', 'dtype': 'float64', 'learning_rate': 0.05},
  ],
)
def test_every_choice_trains(overrides):
  overrides = dict(overrides)
  ds = _tiny(overrides.pop('kind', 'class'), n=80)
  cfg = config.TrainConfig(epochs=15, batch_size=overrides.pop('batch_size', 8), **overrides)
  result = train.fit(cfg, ds)
  first, last = result.history[0]['initial_loss'], result.history[-1]['train_loss']
  assert last < 0.8 * first, (first, last)
  assert result.params.W.dtype == jnp.dtype(cfg.dtype)


def test_early_stopping_keeps_the_best_params():
  ds = _tiny(n=60)
  cfg = config.TrainConfig(epochs=200, patience=3, learning_rate=0.5)
  result = train.fit(cfg, ds)
  assert result.stopped_early and len(result.history) < 200
  best = max(m['val_accuracy'] for m in result.history)
  assert result.history[result.best_epoch - 1]['val_accuracy'] == best
  assert train.evaluate(cfg, ds, result.best_params)['val_accuracy'] == pytest.approx(best)


def test_patience_without_a_validation_split_is_refused_before_training():
  """Without validation rows, early stopping fell back to the training score and said 'validation'."""
  ds = _tiny(n=60)
  no_val = dataclasses.replace(ds, x_val=ds.x_val[:0], y_val=ds.y_val[:0])
  with pytest.raises(
    ValueError, match=r'--patience stops early on the validation score, and --dataset=\S+ has no'
  ):
    train.fit(config.TrainConfig(epochs=5, patience=2), no_val)
  assert len(train.fit(config.TrainConfig(epochs=2), no_val).history) == 2  # without patience it trains


def test_divergence_names_step_and_learning_rate():
  ds = _tiny(kind='real')
  cfg = config.TrainConfig(loss='l2', learning_rate=50.0, epochs=20, batch_size=8)
  with pytest.raises(results.Diverged, match=r'at step \d+ \(epoch \d+\) with learning_rate=50'):
    train.fit(cfg, ds)


def test_a_loss_files_wrong_gradient_is_refused_before_training_and_divergence_points_at_gradcheck(tmp_path):
  """A score_grad wrong only for labels above 4 passed `gradcheck`'s 4 classes and trained to a wrong
  point ("converged"); a sign-flipped one diverged with the blame on the learning rate alone."""
  path = tmp_path / 'mine.py'
  path.write_text(
    'import jax.numpy as jnp\nimport linear_jax as lj\nfrom linear_jax.maths import classification as c\n\n'
    'def late(scores, labels):\n'
    '  g = c.softmax_cross_entropy_score_grad(scores, labels)\n'
    '  return jnp.where((labels >= 5)[:, None], 0.3 * g, g)\n\n'
    "LATE = lj.Loss(c.softmax_cross_entropy, 'class', score_grad=late)\n"
    "GOOD = lj.Loss(c.softmax_cross_entropy, 'class', score_grad=c.softmax_cross_entropy_score_grad)\n"
    'def naive(scores, labels):  # log-sum-exp without the shift by the largest score\n'
    '  correct = jnp.take_along_axis(scores, labels[:, None], axis=1)[:, 0]\n'
    '  return jnp.log(jnp.sum(jnp.exp(scores), axis=1)) - correct\n\n'
    "NAIVE = lj.Loss(naive, 'class', score_grad=c.softmax_cross_entropy_score_grad)\n"
  )
  ds = data.prepare(data.load('digits'), 'digits', seed=0)
  for grad in ('analytic', 'custom_vjp'):
    with pytest.raises(
      ValueError, match=r'mine.py:LATE: its score_grad disagrees with jax.grad of its value'
    ):
      train.fit(config.TrainConfig(loss=f'{path}:LATE', grad=grad, epochs=1), ds)
  assert train.fit(config.TrainConfig(loss=f'{path}:LATE', grad='autodiff', epochs=1), ds).history
  assert train.fit(config.TrainConfig(loss=f'{path}:GOOD', epochs=1), ds).history
  # Checked where scores are of order 1, as training meets them: a naive log-sum-exp, which overflows
  # at the scores of unit weights on raw pixels (about 90), is not refused for it.
  pixels = data.prepare(data.load('digits'), 'digits', seed=0, preprocess='none')
  assert train.fit(config.TrainConfig(loss=f'{path}:NAIVE', learning_rate='auto', epochs=1), pixels).history
  # The library's own losses, more_losses' too, are not checked (tested with it; crammer_singer's
  # subgradient at tied scores differs from jax.grad's); a file's are, even around the library's gradient.
  assert all(losses.is_builtin(lj.LOSSES[n]) for n in ('softmax', 'svm', 'huber', 'crammer_singer'))
  assert not losses.is_builtin(lj.LOSSES.get(f'{path}:NAIVE') or losses.get_loss(f'{path}:NAIVE'))
  values = np.array([1.0, np.inf])
  for loss, hint in ((f'{path}:LATE', True), ('softmax', False)):
    said = divergence.message(config.TrainConfig(loss=loss), values, 1, 1.0, 0, 2, None, None, True)
    assert ('try a smaller --learning_rate' in said) and (
      f'check it with `linear-jax gradcheck --loss={path}:LATE`, or train with --grad=autodiff' in said
    ) == hint


def test_resume_is_bit_exact(tmp_path):
  ds = _tiny(n=60)
  cfg = config.TrainConfig(epochs=6, batch_size=8, optimizer='adam', learning_rate=0.05)
  whole = train.fit(cfg, ds)

  def stop_after_3(metrics):
    if metrics['epoch'] == 3:
      raise KeyboardInterrupt

  first = train.fit(cfg, ds, workdir=str(tmp_path), on_epoch=stop_after_3)
  assert first.interrupted and len(first.history) == 3
  resumed = train.fit(cfg, ds, workdir=str(tmp_path), resume=True)
  assert resumed.resumed_from == 3 and len(resumed.history) == 6
  np.testing.assert_array_equal(resumed.params.W, whole.params.W)
  np.testing.assert_array_equal(resumed.params.b, whole.params.b)
  other = dataclasses.replace(cfg, learning_rate=0.1)
  with pytest.raises(
    ValueError, match=r'written with other settings \(learning_rate\); cannot resume. Run again with'
  ):
    train.fit(other, ds, workdir=str(tmp_path), resume=True)
  # Another optimizer holds another number of arrays: the setting is still what the message names.
  with pytest.raises(ValueError, match=r'written with other settings \(learning_rate, optimizer\)'):
    train.fit(dataclasses.replace(other, optimizer='sgd'), ds, workdir=str(tmp_path), resume=True)


@pytest.mark.parametrize('schedule', ['constant', 'step', 'cosine'])
def test_a_resume_with_more_epochs_trains_on_to_what_a_longer_run_gives(tmp_path, schedule):
  """`train --resume --epochs=N` with N above the checkpoint's was refused as 'other settings
  (epochs)'. It now goes on, bit for bit as a run of N from the start, where the schedule does not
  spread over the epoch count; fewer epochs, or the cosine's, are refused by name."""
  ds = _tiny(n=60)
  cfg = config.TrainConfig(
    epochs=3, batch_size=8, optimizer='momentum', learning_rate=0.05, schedule=schedule, decay_epochs=2.0
  )
  done = train.fit(cfg, ds, workdir=str(tmp_path))
  assert done.stop_reason == 'max_epochs' and len(done.history) == 3
  longer = dataclasses.replace(cfg, epochs=7)
  if schedule == 'cosine':
    with pytest.raises(ValueError, match=r'written for --epochs=3 under --schedule=cosine, whose decay'):
      train.fit(longer, ds, workdir=str(tmp_path), resume=True)
    return
  went_on = train.fit(longer, ds, workdir=str(tmp_path), resume=True)
  whole = train.fit(longer, ds)
  assert went_on.resumed_from == 3 and len(went_on.history) == 7 and went_on.stop_reason == 'max_epochs'
  np.testing.assert_array_equal(went_on.params.W, whole.params.W)
  np.testing.assert_array_equal(went_on.params.b, whole.params.b)
  fewer = dataclasses.replace(cfg, epochs=5)
  with pytest.raises(ValueError, match=r'written for --epochs=7; a resume may raise --epochs to train on'):
    train.fit(fewer, ds, workdir=str(tmp_path), resume=True)
  # Every 2nd epoch evaluated: a last epoch 3 was evaluated for being the last, which a run of 9 does not.
  sparse = dataclasses.replace(cfg, eval_every=2)
  train.fit(sparse, ds, workdir=str(tmp_path / 'sparse'))
  with pytest.raises(ValueError, match=r'--epochs=3, whose last epoch was evaluated for being the last'):
    train.fit(dataclasses.replace(sparse, epochs=9), ds, workdir=str(tmp_path / 'sparse'), resume=True)

  # Stopped before its last epoch, it evaluated nothing extra, and goes on.
  def stop_after_1(metrics):
    if metrics['epoch'] == 1:
      raise KeyboardInterrupt

  cut = tmp_path / 'cut'
  assert train.fit(sparse, ds, workdir=str(cut), on_epoch=stop_after_1).interrupted
  went_on = train.fit(dataclasses.replace(sparse, epochs=6), ds, workdir=str(cut), resume=True)
  whole = train.fit(dataclasses.replace(sparse, epochs=6), ds)
  np.testing.assert_array_equal(went_on.params.W, whole.params.W)
  clock = ('seconds', 'examples_per_s')
  timeless = lambda history: [{k: v for k, v in h.items() if k not in clock} for h in history]
  assert timeless(went_on.history) == timeless(whole.history)
  # A header with a field this version has not (hand-edited, or another version's) is no extension.
  leaves, meta = checkpoint.read(str(tmp_path / 'checkpoint.npz'))
  meta['config']['unknown_field'] = 1
  checkpoint.save(str(tmp_path / 'checkpoint.npz'), leaves, meta)
  with pytest.raises(ValueError, match=r'other settings \(epochs\); cannot resume'):
    train.fit(dataclasses.replace(longer, epochs=9), ds, workdir=str(tmp_path), resume=True)
  with pytest.raises(ValueError, match=r'other settings \(epochs, learning_rate\)'):  # epochs and more
    other = dataclasses.replace(longer, epochs=9, learning_rate=0.1)
    train.fit(other, ds, workdir=str(tmp_path), resume=True)


@pytest.mark.parametrize('stop', ['converged', 'early_stopping', 'max_epochs'])
def test_resuming_a_finished_run_trains_no_further(tmp_path, stop):
  ds = _tiny(n=60)
  settings = {
    # A plateau one feature-scaled step gains little from (0.2% of the decrease), so not 'stalled'.
    'converged': {
      'tol_on': 'objective',
      'tol': 0.01,
      'n_iter_no_change': 2,
      'learning_rate': 0.5,
      'epochs': 50,
    },
    'early_stopping': {'patience': 1, 'learning_rate': 5.0, 'epochs': 50},
    'max_epochs': {'epochs': 3},
  }[stop]
  cfg = config.TrainConfig(batch_size=8, **settings)
  done = train.fit(cfg, ds, workdir=str(tmp_path))
  assert done.stop_reason == stop and not done.already_done and len(done.history) < 50
  again = train.fit(cfg, ds, workdir=str(tmp_path), resume=True)
  assert again.already_done and again.stop_reason == stop and again.resumed_from == len(done.history)
  assert again.history == done.history  # not one epoch more
  np.testing.assert_array_equal(again.params.W, done.params.W)
  np.testing.assert_array_equal(again.best_params.W, done.best_params.W)


def test_checkpoint_of_another_shape_is_refused(tmp_path):
  path = str(tmp_path / 'c.npz')
  checkpoint.save(path, lj.Params(W=np.zeros((3, 4), np.float32), b=np.zeros(3, np.float32)), {'a': 1})
  with pytest.raises(ValueError, match=r'array 0 is float32\[3, 4\] but this model needs float32\[3, 5\]'):
    checkpoint.load(path, lj.Params(W=np.zeros((3, 5), np.float32), b=np.zeros(3, np.float32)))


def test_a_checkpoint_of_garbage_or_of_another_command_is_named_so(tmp_path):
  # 'garbage' was 'This file contains pickled (object) data. If you trust the file ...', hinting at
  # allow_pickle; a sweep's checkpoint under train's name ended in KeyError: 'history'.
  bad = tmp_path / 'c.npz'
  bad.write_bytes(b'garbage')
  with pytest.raises(ValueError, match=r'c\.npz: not a readable checkpoint \(not an \.npz archive\)\.$'):
    checkpoint.read(str(bad))
  work = tmp_path / 'work'
  work.mkdir()
  checkpoint.save(str(work / 'checkpoint.npz'), lj.Params(W=np.zeros((1, 1)), b=np.zeros(1)), {'sweep': 1})
  cfg, data_cfg = config.TrainConfig(epochs=1), experiment.DataConfig(dataset='blobs')
  with pytest.raises(ValueError, match=r'checkpoint\.npz: not a checkpoint of train; run without --resume'):
    experiment.train_and_evaluate(cfg, data_cfg, str(work), experiment.RunOptions(resume=True, plots=False))
  # A header that is a number failed in a TypeError inside each command's reader (train, lr_sweep, search).
  for header in ('5', '[1, 2]'):
    np.savez(bad, meta=np.array(header), leaf_0000=np.zeros(1))
    with pytest.raises(ValueError, match=r'c\.npz: not a linear_jax checkpoint \(its header is not a record'):
      checkpoint.read(str(bad))


def test_checkpoint_write_failure_leaves_the_old_one(tmp_path, monkeypatch):
  path = str(tmp_path / 'c.npz')
  tree = lj.Params(W=np.ones((2, 2), np.float32), b=np.ones(2, np.float32))
  checkpoint.save(path, tree, {'epoch': 1})

  def broken_savez(f, **arrays):
    f.write(b'half a checkpoint')
    raise OSError('disk full')

  monkeypatch.setattr(np, 'savez', broken_savez)
  with pytest.raises(ValueError, match=r'c\.npz: cannot be written \(disk full\)'):  # one line, naming it
    checkpoint.save(path, tree, {'epoch': 2})
  monkeypatch.undo()
  _, meta = checkpoint.load(path, tree)
  assert meta == {'epoch': 1}
  assert [p.name for p in tmp_path.iterdir()] == ['c.npz']  # no temporary left behind


@pytest.mark.parametrize(
  ('change', 'message'),
  [
    # Each was chex's AssertionError inside jit, an AttributeError, or accepted (x_test, shift).
    (lambda d: {'y_val': d.y_val[:-3]}, r'^tiny val split: 5 targets for 8 rows\.$'),
    (
      lambda d: {'x_val': d.x_val[:, :2]},
      r'^tiny val split: x is \[8, 2\]; the training split has 3 features\.$',
    ),
    (lambda d: {'x_test': d.x_test[:, :2]}, r'^tiny test split: x is \[8, 2\]'),
    (lambda d: {'shift': d.shift[:1]}, r'^tiny: shift is \[1\], not \[3\], one per feature\.$'),
    (
      lambda d: {'x_train': d.x_train.tolist()},
      r'^tiny train split: x and y must be arrays, got list, ndarray',
    ),
  ],
)
def test_a_dataset_built_by_hand_whose_splits_disagree_is_refused_by_split(change, message):
  ds = dataclasses.replace(_tiny(), name='tiny')
  with pytest.raises(ValueError, match=message):
    train.fit(config.TrainConfig(epochs=1), dataclasses.replace(ds, **change(ds)))


def test_loss_that_does_not_fit_the_data_is_refused():
  ds = _tiny(kind='real')
  with pytest.raises(ValueError, match=r'--loss=softmax does not fit --dataset=real: it has real-valued'):
    train.fit(config.TrainConfig(loss='softmax'), ds)
  with pytest.raises(ValueError, match=r"a loss with 'binary' targets needs 2"):
    train.fit(config.TrainConfig(loss='hinge'), _tiny())


@pytest.mark.parametrize(
  'field,value',
  [
    ('learning_rate', 0.0),
    ('epochs', 0),
    ('reg', -1.0),
    ('batch_size', -1),
    ('optimizer', 'newton'),
    ('tol', 0.0),
    ('tol_on', 'loss'),
  ],
)
def test_bad_config_names_the_field(field, value):
  with pytest.raises(ValueError, match=field if field != 'optimizer' else 'Unknown optimizer'):
    config.TrainConfig(**{field: value}).validate()


def test_float64_without_x64_is_refused_not_truncated():
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel

  code = (
    'import linear_jax as lj\n'
    'from linear_jax import data\n'
    "ds = data.prepare(data.blobs(30, 2, 2), 'blobs')\n"
    "lj.fit(lj.TrainConfig(dtype='float64', epochs=1), ds)\n"
  )
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
  assert out.returncode != 0 and 'silently train in float32' in out.stderr


def test_sample_weights_train_streamed_and_data_parallel_as_in_memory():
  # The loaders' weights reach every mode: streamed and data-parallel full-batch descent
  # end where in-memory descent with the same weights does, and differ from the unweighted run.
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(60, 3)).astype(np.float32), rng.integers(0, 2, 60)
  ds = data.prepare(from_arrays(x, y, sample_weight=np.linspace(0.1, 3.0, 60) ** 2), 'weighted')
  assert ds.w_train is not None
  cfg = config.TrainConfig(batch_size=0, epochs=3, learning_rate=0.5)
  ref = train.fit(cfg, ds)
  unweighted = train.fit(cfg, dataclasses.replace(ds, w_train=None, w_val=None))
  assert np.abs(np.asarray(ref.params.W) - np.asarray(unweighted.params.W)).max() > 1e-3
  for other in (
    dataclasses.replace(cfg, stream=True, block_rows=7),
    dataclasses.replace(cfg, parallel='shard_map'),
  ):
    got = train.fit(other, ds)
    assert got.streamed == other.stream
    np.testing.assert_allclose(got.params.W, ref.params.W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.history[-1]['train_loss'], ref.history[-1]['train_loss'], rtol=1e-5)
  ours = train.evaluate(dataclasses.replace(cfg, stream=True, block_rows=7), ds, ref.params)
  theirs = train.evaluate(cfg, ds, ref.params)
  assert ours.keys() == theirs.keys()
  for k in theirs:
    np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-5, err_msg=k)


def test_accuracy_is_exact_in_a_float64_run_and_float32_in_a_float32_run():
  """A float64 run's accuracy was rounded to float32 (0.7700000405 for 77 of 100); it is the exact
  share now, and a float32 run's is float32's rounding of it, as before."""
  ds = data.prepare(data.load('breast_cancer'), 'breast_cancer', 0.2, 0.2, seed=0, dtype=np.float64)
  for dtype in ('float64', 'float32'):
    cfg = config.TrainConfig(loss='logistic', epochs=2, dtype=dtype)
    params = train.fit(cfg, ds).params
    w, b = np.asarray(params.W, np.float64), np.asarray(params.b, np.float64)
    for split in ('train', 'test'):
      x, y = getattr(ds, f'x_{split}'), getattr(ds, f'y_{split}')
      share = np.mean(((np.asarray(x, np.float64) @ w.T + b)[:, 0] >= 0) == y)
      accuracy = train.evaluate(cfg, ds, params)[f'{split}_accuracy']
      assert accuracy == pytest.approx(share, rel=1e-15 if dtype == 'float64' else 1e-7)
      assert (float(np.float32(accuracy)) == accuracy) == (dtype == 'float32')  # float32's rounding, or not


def test_parameters_of_another_shape_or_not_finite_get_no_metrics_or_predictions():
  # NaN weights predicted class 0 for every row and reported accuracies beside a NaN loss; parameters of
  # another model failed in a chex AssertionError.
  ds = data.prepare(data.blobs(90, 2, 3, seed=0), 'blobs')
  cfg = config.TrainConfig(epochs=2)
  params = train.fit(cfg, ds).params
  nan = params._replace(W=params.W.at[1, 0].set(np.nan))
  with pytest.raises(ValueError, match=r'W holds 1 non-finite value\(s\) \(NaN or infinity\)'):
    train.evaluate(cfg, ds, nan)
  with pytest.raises(ValueError, match=r'W holds 1 non-finite value'):
    lj.predict(nan, np.ones((4, 2)))
  with pytest.raises(ValueError, match=r'W must be \[1, 2\] for this model and data, got shape \[3, 2\]'):
    train.evaluate(dataclasses.replace(cfg, loss='hinge'), data.prepare(data.binary2d(60), 'b'), params)
  assert 0 <= train.evaluate(cfg, ds, params)['test_accuracy'] <= 1


def test_a_streamed_accuracy_counts_its_rows_and_equals_the_in_memory_one():
  # Each block's share of the rows, added in float32, made 1.0000004 of thirty right rows.
  x = np.random.default_rng(0).normal(size=(150, 3))
  y = (x[:, 0] > 0).astype(int)
  x[:, 0] += np.where(y, 3, -3)  # separable: every row right
  ds = data.prepare(from_arrays(x, y), 'separable', seed=0)
  cfg = config.TrainConfig(epochs=3)
  params = train.fit(cfg, ds).params
  in_memory = train.evaluate(cfg, ds, params)
  assert in_memory['test_accuracy'] == 1.0
  for block_rows in (1, 7):
    streamed = train.evaluate(dataclasses.replace(cfg, stream=True, block_rows=block_rows), ds, params)
    for split in ('train', 'val', 'test'):
      assert streamed[f'{split}_accuracy'] == in_memory[f'{split}_accuracy'], (block_rows, split)


def test_evaluate_refuses_the_rows_and_the_loss_that_fit_refuses():
  # `evaluate` checked only the parameters: a label out of range, a loss of other targets and an infinite
  # feature gave accuracies and a NaN or infinite loss.
  ds = data.prepare(data.blobs(90, 2, 3, seed=0), 'blobs')
  cfg = config.TrainConfig(epochs=1)
  params = train.fit(cfg, ds).params
  y_val = np.asarray(ds.y_val).copy()
  y_val[0] = 7
  with pytest.raises(ValueError, match=r'blobs val split.*7'):
    train.evaluate(cfg, dataclasses.replace(ds, y_val=y_val), params)
  x_val = np.asarray(ds.x_val).copy()
  x_val[1, 0] = np.inf
  with pytest.raises(ValueError, match=r'blobs val split'):
    train.evaluate(cfg, dataclasses.replace(ds, x_val=x_val), params)
  binary = params._replace(W=params.W[:1], b=params.b[:1])
  with pytest.raises(ValueError, match=r'--loss=hinge does not fit --dataset=blobs'):
    train.evaluate(dataclasses.replace(cfg, loss='hinge'), ds, binary)
  regression = data.prepare(data.linreg(60, 2, seed=0), 'linreg')
  with pytest.raises(ValueError, match=r'--loss=svm does not fit --dataset=linreg'):
    train.evaluate(dataclasses.replace(cfg, loss='svm'), regression, params)
  assert 0 <= train.evaluate(cfg, ds, params)['val_accuracy'] <= 1


def test_an_empty_training_split_and_an_optimum_asked_for_nothing_are_refused():
  # A ZeroDivisionError in the step count; a NaN tol returned the start's loss as f*, and a negative
  # max_iter failed in XLA's words.
  ds = data.prepare(data.blobs(60, 2, 2, seed=0), 'blobs')
  empty = dataclasses.replace(ds, x_train=ds.x_train[:0], y_train=ds.y_train[:0])
  with pytest.raises(ValueError, match='the training split has no rows'):
    train.fit(config.TrainConfig(epochs=1), empty)
  cfg = config.TrainConfig(loss='logistic')
  for kwargs, match in (
    ({'tol': float('nan')}, r'tol must be a finite number > 0 \(or None, the default\), got nan'),
    ({'tol': -1.0}, r'tol must be a finite number > 0'),
    ({'max_iter': -5}, r'max_iter must be a whole number >= 1, got -5'),
    ({'max_iter': 2.5}, r'max_iter must be a whole number >= 1'),
  ):
    with pytest.raises(ValueError, match=match):
      lj.optimum(cfg, ds, **kwargs)


def test_fit_takes_a_workdir_as_the_commands_do_and_refuses_one_it_cannot_use(tmp_path, monkeypatch):
  # A missing folder and a file failed in the OS's words, '~' was a folder named '~', '' wrote no
  # checkpoint without a word, and a negative interval was taken.
  ds = data.prepare(data.blobs(60, 2, 2, seed=0), 'blobs')
  cfg = config.TrainConfig(epochs=1)
  (tmp_path / 'file').write_text('x')
  for workdir, kwargs, match in (
    (str(tmp_path / 'file'), {}, r'workdir=.*file is not a folder'),
    ('', {}, r'workdir is empty'),
    (str(tmp_path / 'w'), {'checkpoint_every': -1}, r'checkpoint_every must be a whole number >= 0'),
  ):
    for optimizer in ('sgd', 'lbfgs'):  # L-BFGS writes no checkpoint, and is told of a bad workdir too
      with pytest.raises(ValueError, match=match):
        train.fit(dataclasses.replace(cfg, optimizer=optimizer), ds, workdir=workdir, **kwargs)
  monkeypatch.setenv('HOME', str(tmp_path))
  train.fit(cfg, ds, workdir='~/new/run', checkpoint_every=1)
  assert (tmp_path / 'new' / 'run' / 'checkpoint.npz').is_file()
