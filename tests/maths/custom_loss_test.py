"""Your own loss, end to end: Loss records, register_loss, files on the command line, hyperparameters."""

import contextlib
import gc
import json
import pathlib
import textwrap

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import linear_jax as lj
from linear_jax.data import datasets as data
from linear_jax.maths import classification
from linear_jax.maths import gradcheck
from linear_jax.maths import losses
from linear_jax.maths import more_losses
from linear_jax.optim import config
from linear_jax.optim import step
from linear_jax.runs import gradcheck_run
from linear_jax.training import train
from linear_jax.tuning import search
from linear_jax.tuning import sweep

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _sq_value(scores, labels, margin=1.0):
  y = 2.0 * labels - 1.0
  return jnp.square(jax.nn.relu(margin - y * scores[:, 0]))


def _sq_grad(scores, labels, margin=1.0):
  y = 2.0 * labels - 1.0
  return (-2.0 * y * jax.nn.relu(margin - y * scores[:, 0]))[:, None]


SQ = lj.Loss(value=_sq_value, targets='binary', score_grad=_sq_grad, hparams={'margin': 1.0})


@pytest.fixture
def registered():
  name = 'test_squared_binary_hinge'
  yield lj.register_loss(name, SQ, overwrite=True)
  losses.LOSSES.pop(name, None)


@pytest.mark.parametrize(
  'kwargs,match',
  [
    (dict(value=_sq_value, targets='labels'), r"field 'targets' must be one of class, binary, real"),
    (dict(value=None, targets='binary'), r"field 'value' must be a function"),
    (dict(value=_sq_value, targets='binary', score_grad=3), r"field 'score_grad' must be a function"),
    (
      dict(value=_sq_value, targets='binary', hparams={'margin': -1.0}),
      r"default of hyperparameter 'margin'",
    ),
    (dict(value=_sq_value, targets='binary', hparams={'reg': 1.0}), r"hyperparameter name 'reg'"),
    (
      dict(value=_sq_value, targets='binary', hparams={'t': 5.0}, bounds={'t': (0.0, 1.0)}),
      r"'t' must be finite and in \[0, 1\], got 5.0",
    ),
    (dict(value=_sq_value, targets='binary', bounds={'t': (0.0, 1.0)}), r"'bounds' names 't'"),
    (  # strings compare as strings: the default's check then failed in NumPy, naming nothing
      dict(value=_sq_value, targets='binary', hparams={'t': 1.0}, bounds={'t': ('0.1', '10')}),
      r"bounds of 't' must be two numbers \(low, high\) with low <= high, got \('0.1', '10'\)",
    ),
  ],
)
def test_rejects_malformed_record_naming_the_field(kwargs, match):
  with pytest.raises(ValueError, match=match):
    lj.Loss(**kwargs)


def test_register_refuses_taken_name_unless_asked(registered):
  with pytest.raises(ValueError, match='registered already'):
    lj.register_loss('test_squared_binary_hinge', SQ)
  assert lj.register_loss('test_squared_binary_hinge', SQ, overwrite=True).name == 'test_squared_binary_hinge'
  with pytest.raises(ValueError, match='takes a linear_jax.Loss'):
    lj.register_loss('x', _sq_value)


@pytest.mark.parametrize(
  'field,fn,match',
  [
    ('value', lambda s, t, margin=1.0: s, r"field 'value' must return shape \[5\]"),
    ('score_grad', lambda s, t, margin=1.0: s[:, 0], r"field 'score_grad' must return shape \[5, 1\]"),
    # A shape fixed in the file passed a probe of four examples and ended training in a JAX traceback.
    ('value', lambda s, t, margin=1.0: jnp.zeros(4), r"field 'value' must return shape \[5\] .* got \[4\]"),
    ('value', lambda s, t, margin=1.0: jnp.zeros(5), r"field 'value' must return shape \[7\] .* got \[5\]"),
    ('value', lambda s, t, margin=1.0: s @ jnp.ones(5), r"field 'value' raised TypeError"),
    # An integer value has no gradient (jax.grad raised deep in training) and checked as "passed".
    (
      'value',
      lambda s, t, margin=1.0: (s[:, 0] > 0).astype(jnp.int32),
      "field 'value' must return floating-point",
    ),
    (
      'score_grad',
      lambda s, t, margin=1.0: jnp.sign(s).astype(jnp.int32),
      "'score_grad' must return floating-point",
    ),
    # Kinks are told example by example; a sum, or the examples on another axis, hid them or failed in jit.
    ('kinks', lambda s, t, margin=1.0: jnp.sum(margin - s), r"field 'kinks' must return one row per example"),
    ('kinks', lambda s, t, margin=1.0: (margin - s).T, r"'kinks' must return one row .* got \[1, 5\]"),
    ('kinks', lambda s, t, margin=1.0: jnp.zeros(5), r"'kinks' must return one row per example \(\[7\]"),
  ],
)
def test_register_refuses_wrong_shapes_and_raising_functions(field, fn, match):
  bad = SQ.__class__(**{**SQ.__dict__, field: fn})
  with pytest.raises(ValueError, match=match):
    lj.register_loss('bad', bad)
  assert 'bad' not in lj.LOSSES


def test_a_record_made_where_a_probed_one_was_is_probed_again():
  # CPython often puts a new object where a freed one was: a record found finite once must not
  # vouch for a later one that happens to get its id.
  for _ in range(20):
    finite = lj.Loss(value=lambda s, t: jnp.square(s[:, 0]), targets='binary')
    losses.probe(finite, concrete=True)
    del finite
    gc.collect()
    with pytest.raises(ValueError, match="field 'value' returned non-finite"):
      losses.probe(lj.Loss(value=lambda s, t: jnp.log(s[:, 0] * 0.0), targets='binary'), concrete=True)


def test_non_finite_output_is_refused_before_any_work():
  inf_loss = lj.Loss(value=lambda s, t: jnp.log(s[:, 0] * 0.0), targets='binary')
  rec = lj.register_loss('test_inf', inf_loss, overwrite=True)
  try:
    params, x, y = gradcheck.random_problem(jax.random.PRNGKey(0), 'logistic', 6, 2)
    with pytest.raises(ValueError, match=r"Loss 'test_inf': field 'value' returned non-finite"):
      lj.check_gradients(params, x, y, loss=rec, grad_fn=lambda p, *a, **k: p)
    ds = data.prepare(data.binary2d(60, seed=0), 'binary2d')
    with pytest.raises(ValueError, match='non-finite'):
      train.fit(config.TrainConfig(loss='test_inf', grad='autodiff', epochs=1), ds)
  finally:
    losses.LOSSES.pop('test_inf')


def test_registered_loss_works_by_name_everywhere(registered):
  params, x, y = gradcheck.random_problem(jax.random.PRNGKey(1), 'hinge', 12, 3)
  name = registered.name
  f = lj.objective(params, x, y, loss=name, reg=0.1, margin=0.5)
  expect = np.mean(np.maximum(0, 0.5 - (2 * np.asarray(y) - 1) * np.asarray(lj.scores(params, x))[:, 0]) ** 2)
  np.testing.assert_allclose(f, expect + 0.1 * np.sum(np.square(params.W)), rtol=1e-12)
  g = lj.analytic_grad(params, x, y, loss=name, reg=0.1, margin=0.5)
  auto = jax.grad(lj.objective)(params, x, y, loss=name, reg=0.1, margin=0.5)
  vjp = jax.grad(lj.custom_vjp_objective)(params, x, y, loss=name, reg=0.1, margin=0.5)
  for a in (auto, vjp):
    np.testing.assert_allclose(g.W, a.W, rtol=1e-12)
  assert lj.check_gradients(params, x, y, loss=name, reg=0.1, margin=0.5).passed
  ds = data.prepare(data.binary2d(200, seed=0), 'binary2d')
  cfg = config.TrainConfig(loss=name, loss_hparams={'margin': 0.5}, epochs=5, batch_size=32)
  result = train.fit(cfg, ds)
  assert train.evaluate(cfg, ds, result.params)['val_accuracy'] > 0.8
  res = sweep.run_sweep(cfg, ds, sweep.grid([0.1], [0.0], loss_hparams={'margin': [0.5, 1.0]}))
  np.testing.assert_allclose(res.params.W[0], result.params.W, rtol=1e-3, atol=1e-5)  # float32, vmapped
  assert not np.allclose(res.params.W[1], result.params.W, rtol=1e-2)  # margin 1.0 trains another model
  rows = search.compare(dataclasses_replace(cfg, epochs=1), ds, 200, population=10, name='2-D')
  assert rows


def dataclasses_replace(cfg, **kw):
  import dataclasses  # pylint: disable=import-outside-toplevel

  return dataclasses.replace(cfg, **kw)


def test_hyperparameter_errors_name_the_loss_and_field():
  params, x, y = gradcheck.random_problem(jax.random.PRNGKey(2), 'huber', 5, 2, 1)
  with pytest.raises(ValueError, match=r"Loss 'huber' has delta; got 'margin'"):
    lj.objective(params, x, y, loss='huber', margin=1.0)
  with pytest.raises(ValueError, match=r"Loss 'softmax' has no hyperparameters; got 'margin'"):
    p, xs, ys = gradcheck.random_problem(jax.random.PRNGKey(2), 'softmax', 5, 2, 3)
    lj.objective(p, xs, ys, loss='softmax', margin=1.0)
  with pytest.raises(ValueError, match=r"Loss 'huber': hyperparameter 'delta' must be finite and >= 1e-12"):
    lj.objective(params, x, y, loss='huber', delta=float('nan'))
  with pytest.raises(ValueError, match=r"Loss 'huber' has delta; got 'delta2'"):
    config.TrainConfig(loss='huber', loss_hparams={'delta2': 1.0}).validate()


def test_loss_without_score_grad_is_refused_for_analytic_but_trains_with_autodiff():
  rec = lj.register_loss('test_no_grad', lj.Loss(value=_sq_value, targets='binary'), overwrite=True)
  try:
    params, x, y = gradcheck.random_problem(jax.random.PRNGKey(3), 'hinge', 8, 2)
    with pytest.raises(ValueError, match=r"Loss 'test_no_grad' has no hand-derived score_grad"):
      lj.analytic_grad(params, x, y, loss=rec)
    auto = lambda p, x_, y_, **kw: jax.grad(lj.objective)(p, x_, y_, **kw)
    assert lj.check_gradients(params, x, y, loss=rec, grad_fn=auto).passed
    ds = data.prepare(data.binary2d(100, seed=0), 'binary2d')
    with pytest.raises(ValueError, match='--grad=analytic needs a hand-derived score_grad'):
      train.fit(config.TrainConfig(loss='test_no_grad', epochs=1), ds)
    assert train.fit(config.TrainConfig(loss='test_no_grad', grad='autodiff', epochs=2), ds).history
  finally:
    losses.LOSSES.pop('test_no_grad')


def test_huber_matches_optax_and_its_gradient_is_clipped_residual():
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(20, 3)) * 3, rng.normal(size=(20, 3))
  for delta in (0.5, 1.0, 2.5):
    ours = more_losses.huber(jnp.asarray(s), jnp.asarray(t), delta)
    ref = optax.losses.huber_loss(jnp.asarray(s), jnp.asarray(t), delta=delta).sum(-1)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    g = jax.grad(lambda s_: optax.losses.huber_loss(s_, jnp.asarray(t), delta=delta).sum())(jnp.asarray(s))
    np.testing.assert_allclose(
      more_losses.huber_score_grad(jnp.asarray(s), jnp.asarray(t), delta), g, rtol=1e-12
    )


def test_crammer_singer_matches_optax_and_sits_below_weston_watkins():
  rng = np.random.default_rng(1)
  s, y = jnp.asarray(rng.normal(size=(50, 5)) * 2), jnp.asarray(rng.integers(0, 5, 50))
  np.testing.assert_allclose(
    more_losses.crammer_singer(s, y), optax.losses.multiclass_hinge_loss(s, y), rtol=1e-12, atol=1e-14
  )
  g = jax.grad(lambda s_: optax.losses.multiclass_hinge_loss(s_, y).sum())(s)
  np.testing.assert_allclose(more_losses.crammer_singer_score_grad(s, y), g, atol=1e-12)
  ww = classification.multiclass_svm(s, y)
  cs = more_losses.crammer_singer(s, y)
  assert bool(jnp.all(cs <= ww + 1e-12)) and bool(jnp.all(ww <= 4 * cs + 1e-12))  # max ≤ sum ≤ (C−1)·max


def test_squared_hinge_is_the_square_of_each_svm_margin():
  rng = np.random.default_rng(2)
  s, y = rng.normal(size=(30, 4)), rng.integers(0, 4, 30)
  m = s - s[np.arange(30), y][:, None] + 1.5
  m[np.arange(30), y] = 0
  np.testing.assert_allclose(
    more_losses.squared_hinge(jnp.asarray(s), jnp.asarray(y), 1.5), (np.maximum(m, 0) ** 2).sum(1), rtol=1e-12
  )


@pytest.mark.parametrize('loss', ['squared_hinge', 'huber', 'crammer_singer'])
def test_more_losses_pass_the_gradient_checker(loss):
  params, x, y = gradcheck.random_problem(jax.random.PRNGKey(4), loss, 12, 3, 4)
  hp = {'delta': 0.7} if loss == 'huber' else {'margin': 0.8}
  for method in ('central', 'directional'):
    assert lj.check_gradients(params, x, y, loss=loss, reg=0.05, method=method, **hp).passed
  wrong = gradcheck.PLANTED_BUGS['factor_two']
  assert not lj.check_gradients(params, x, y, loss=loss, grad_fn=wrong, **hp).passed


def test_sweep_varies_a_loss_hyperparameter_in_one_program():
  ds = data.prepare(data.linreg(300, 3, seed=0), 'linreg')
  cfg = config.TrainConfig(loss='huber', epochs=3, batch_size=32, learning_rate=0.05)
  res = sweep.run_sweep(cfg, ds, sweep.grid([0.05], [0.0], loss_hparams={'delta': [0.1, 10.0]}))
  assert [s['delta'] for s in res.settings] == [0.1, 10.0]
  for k, delta in enumerate((0.1, 10.0)):
    alone = train.fit(sweep.config_for(cfg, res.settings[k]), ds)
    assert alone.history[-1]['train_loss'] == pytest.approx(float(res.final['train_loss'][k]), rel=1e-4)
    assert sweep.config_for(cfg, res.settings[k]).loss_hparams == {'delta': delta}
  with pytest.raises(ValueError, match=r"Loss 'huber' has delta; got 'margin'"):
    sweep.run_sweep(cfg, ds, sweep.grid([0.05], [0.0], margins=[1.0]))


# -- from the command line -------------------------------------------------------------------------

USER_FILE = textwrap.dedent(
  """
  import jax
  import jax.numpy as jnp
  import linear_jax as lj

  def value(scores, labels, margin=1.0):
    y = 2.0 * labels - 1.0
    return jnp.square(jax.nn.relu(margin - y * scores[:, 0]))

  def score_grad(scores, labels, margin=1.0):
    y = 2.0 * labels - 1.0
    return (-2.0 * y * jax.nn.relu(margin - y * scores[:, 0]))[:, None]

  GOOD = lj.Loss(value=value, targets='binary', score_grad=score_grad, hparams={'margin': 1.0})
  def wrong_grad(scores, labels, margin=1.0):
    return 2.0 * score_grad(scores, labels, margin)

  WRONG = lj.Loss(value=value, targets='binary', score_grad=wrong_grad, hparams={'margin': 1.0})
  NOT_A_LOSS = 3
  """
)


def _run_all(run_commands, commands, cached=False):
  """`python -m module *args` for each `(module, args)` of `commands`, each as its own process (conftest's
  `run_commands`): its `returncode`, `stdout` and `stderr`. With the test run's compilation cache if
  `cached` (the commands' default: a program compiled once serves the later runs), else with none, so
  stderr holds only what the command says."""
  cache = [] if cached else ['--compilation_cache=']
  return run_commands([(module, [*args, *cache], ROOT) for module, args in commands])


@pytest.fixture
def user_file(tmp_path):
  path = tmp_path / 'my_loss.py'
  path.write_text(USER_FILE)
  return path


def test_user_file_in_gradcheck_train_sweep_and_search(user_file, tmp_path, run_commands):
  common = ('--dataset=breast_cancer', f'--loss={user_file}:GOOD', '--loss_hparams=margin=0.5')
  good, wrong, trained, swept, searched = _run_all(
    run_commands,
    [
      ('experiments.gradcheck', [f'--loss={user_file}:GOOD', '--method=central', '--penalty=l2']),
      ('experiments.gradcheck', [f'--loss={user_file}:WRONG', '--method=central', '--penalty=l2']),
      ('experiments.train', [*common, '--epochs=2', f'--workdir={tmp_path / "t"}', '--quiet', '--noplots']),
      (
        'experiments.lr_sweep',
        [
          '--dataset=breast_cancer',
          f'--loss={user_file}:GOOD',
          '--sweep_loss_hparam=margin=0.5,2',
          '--lrs=0.1',
          '--regs=0',
          '--epochs=2',
          f'--workdir={tmp_path / "s"}',
          '--quiet',
        ],
      ),
      (
        'experiments.search',
        [
          f'--loss={user_file}:GOOD',
          '--dataset=breast_cancer',
          '--budget=100',
          '--low_dim=false',  # the user's loss on the dataset is the point; the 2-D problem is search's own
          f'--workdir={tmp_path / "r"}',
        ],
      ),
    ],
    cached=True,
  )
  assert good.returncode == 0, good.stderr
  assert wrong.returncode == 1
  assert 'analytic vs autodiff' in wrong.stdout and 'W[0, ' in wrong.stdout and 'FAIL' in wrong.stdout
  assert trained.returncode == 0, trained.stderr
  summary = json.loads((tmp_path / 't' / 'summary.json').read_text())
  assert summary['loss_hparams'] == {'margin': 0.5} and summary['final']['test_accuracy'] > 0.8
  assert swept.returncode == 0, swept.stderr
  header = (tmp_path / 's' / 'sweep.csv').read_text().splitlines()[0].split(',')
  assert header[:3] == ['learning_rate', 'reg', 'margin']
  assert searched.returncode == 0, searched.stderr


BAD_LOSS_FLAGS = [
  ('{d}/missing.py:GOOD', 'no file'),
  ('{d}/my_loss.py:NOPE', "defines no 'NOPE'"),
  ('{d}/my_loss.py:NOT_A_LOSS', 'is of type int, not a linear_jax.Loss'),
  ('{d}/raises.py:X', 'raised ZeroDivisionError on import'),
  ('{d}/exits.py:X', 'exits.py exited while it was imported (sys.exit(0))'),
  ('no_such_module_xyz:X', "cannot import module 'no_such_module_xyz'"),
  ('softmax', None),
]


@pytest.fixture(scope='module')
def refused(tmp_path_factory, run_commands):
  """`{spec: (the train command's answer, its workdir)}` for each `--loss` of BAD_LOSS_FLAGS, and under
  `'NAN'` gradcheck's for a loss whose value is NaN and its file: without a compilation cache, one process."""
  d = tmp_path_factory.mktemp('refused')
  (d / 'my_loss.py').write_text(USER_FILE)
  (d / 'autodiff_only.py').write_text(AUTODIFF_ONLY_FILE)
  (d / 'raises.py').write_text('1 / 0\n')
  (d / 'exits.py').write_text('import sys\nsys.exit(0)\n')
  workdirs = [d / f'w{i}' for i in range(len(BAD_LOSS_FLAGS))]
  commands = [
    (
      'experiments.train',
      [f'--loss={spec.format(d=d)}', '--loss_hparams=delta=2', '--epochs=1', f'--workdir={w}'],
    )
    for (spec, _), w in zip(BAD_LOSS_FLAGS, workdirs, strict=True)
  ]
  nan_file = d / 'autodiff_only.py'
  commands.append(('experiments.gradcheck', [f'--loss={nan_file}:NAN', '--method=central', '--penalty=l2']))
  *runs, nan = _run_all(run_commands, commands)
  answers = zip([spec for spec, _ in BAD_LOSS_FLAGS], zip(runs, workdirs, strict=True), strict=True)
  return dict(answers) | {'NAN': (nan, nan_file)}


@pytest.mark.parametrize('spec,match', BAD_LOSS_FLAGS)
def test_bad_loss_flag_is_one_line_before_any_work(refused, spec, match):
  out, workdir = refused[spec]
  assert out.returncode != 0
  assert 'Traceback' not in out.stderr
  assert match is None or match in out.stderr
  if match is None:  # a known loss given a hyperparameter it does not have
    assert "Loss 'softmax' has no hyperparameters; got 'delta'" in out.stderr
  assert not (workdir / 'metrics.jsonl').exists()


def test_a_loss_file_path_expands_the_home_folder(user_file, monkeypatch):
  monkeypatch.setenv('HOME', str(user_file.parent))
  assert losses.get_loss('~/my_loss.py:GOOD').targets == 'binary'


@pytest.mark.parametrize('code', ['import sys\nsys.exit(0)\n', 'raise SystemExit(3)\n'])
def test_a_loss_file_that_exits_on_import_is_a_one_line_error(tmp_path, code):
  (tmp_path / 'exits.py').write_text(code)
  with pytest.raises(ValueError, match=r'exits\.py exited while it was imported \(sys\.exit\((0|3)\)\)'):
    losses.get_loss(f'{tmp_path}/exits.py:X')


def test_a_loss_flag_naming_a_file_that_is_not_python_says_the_form(tmp_path, monkeypatch):
  (tmp_path / 'my_loss.txt').write_text('X = 1\n')
  monkeypatch.chdir(tmp_path)
  for spec in ('my_loss.txt:X', f'{tmp_path}/my_loss.txt:X'):
    with pytest.raises(ValueError, match=r'my_loss\.txt is not a Python file; write FILE\.py:NAME'):
      losses.get_loss(spec)
  with pytest.raises(ValueError, match=r'no_such\.txt.*\(a loss is FILE\.py:NAME or package\.module:NAME\)'):
    losses.get_loss('no_such.txt:X')
  (tmp_path / 'pk.py').mkdir()
  for folder in (tmp_path, tmp_path / 'pk.py'):  # a folder, even one named like a file, is no file
    with pytest.raises(ValueError, match=rf'{folder} is a folder, not a Python file; write FILE\.py:NAME'):
      losses.get_loss(f'{folder}:X')
  with pytest.raises(ValueError, match='no file'):
    losses.get_loss(f'{tmp_path}/gone.py:X')


def test_a_loss_registered_again_under_its_name_is_the_one_a_compiled_program_runs():
  name = 'test_replaced_loss'
  x = jnp.asarray(np.random.default_rng(0).standard_normal((20, 3)), jnp.float32)
  y = jnp.asarray(np.arange(20) % 2, jnp.int32)
  try:
    lj.register_loss(name, SQ, overwrite=True)
    cfg = config.TrainConfig(loss=name, penalty='l2', reg=0.0)
    params = lj.init_params(jax.random.PRNGKey(0), 3, 1, scale=0.5)
    before = float(step.compiled_eval_fn(cfg)(params, x, y, step.hparams(cfg))['loss'])
    np.testing.assert_allclose(before, float(jnp.mean(_sq_value(lj.scores(params, x), y))), rtol=1e-6)
    doubled = lj.Loss(
      value=lambda s, labels, margin=1.0: 2.0 * _sq_value(s, labels, margin),
      targets='binary',
      hparams={'margin': 1.0},  # the same hyperparameters: the same pytree of arguments
    )
    lj.register_loss(name, doubled, overwrite=True)
    after = float(step.compiled_eval_fn(cfg)(params, x, y, step.hparams(cfg))['loss'])
    np.testing.assert_allclose(after, 2.0 * before, rtol=1e-6)  # not the program compiled for SQ
    losses.LOSSES.pop(name)  # the name taken out of the table, then given a record again
    lj.register_loss(name, SQ)
    again = float(step.compiled_eval_fn(cfg)(params, x, y, step.hparams(cfg))['loss'])
    np.testing.assert_allclose(again, before, rtol=1e-6)  # not the program compiled for `doubled`
  finally:
    losses.LOSSES.pop(name, None)


# -- a loss without a hand-derived gradient: autodiff is what gets checked ---------------------------

AUTODIFF_ONLY_FILE = textwrap.dedent(
  """
  import jax
  import jax.numpy as jnp
  import linear_jax as lj

  def value(scores, labels):
    y = 2.0 * labels - 1.0
    return jnp.square(jax.nn.relu(1.0 - y * scores[:, 0]))

  NO_GRAD = lj.Loss(value=value, targets='binary')

  @jax.custom_jvp
  def doubled_jvp(scores, labels):
    return value(scores, labels)

  @doubled_jvp.defjvp
  def _doubled_jvp(primals, tangents):  # the planted bug: twice the true derivative
    scores, labels = primals
    y = 2.0 * labels - 1.0
    slope = -2.0 * y * jax.nn.relu(1.0 - y * scores[:, 0])
    return doubled_jvp(scores, labels), 2.0 * slope * tangents[0][:, 0]

  WRONG_JVP = lj.Loss(value=doubled_jvp, targets='binary')

  def nan_value(scores, labels):
    return jnp.log(scores[:, 0] - 1e9)

  NAN = lj.Loss(value=nan_value, targets='binary')
  """
)


def test_a_loss_without_score_grad_has_its_autodiff_checked_and_a_wrong_custom_jvp_fails(tmp_path):
  path = tmp_path / 'autodiff_only.py'
  path.write_text(AUTODIFF_ONLY_FILE)
  said = []
  kw = dict(bias_trick='no', num_examples=12, num_features=3, on_autodiff_only=said.append)
  good = gradcheck_run.check_all([f'{path}:NO_GRAD'], ['l2'], ['central', 'directional'], **kw)
  assert said == [f'{path}:NO_GRAD']  # said once, for every check of that loss
  assert all(r.passed and r.grad == 'autodiff' for r in good), [r.summary() for r in good]
  assert [c.pair for c in good[0].comparisons] == ['autodiff vs numerical']
  assert 'grad=autodiff' in good[0].summary() and 'analytic' not in good[0].summary()
  bad = gradcheck_run.check_all([f'{path}:WRONG_JVP'], ['l2'], ['central'], **kw)[0]
  assert not bad.passed and bad.comparisons[0].num_failed > 0
  # The coordinates that fail are off by the planted factor: autodiff twice the finite difference
  # (the penalty's part, reg·W, is right, so the ratio is a little under 2).
  ratios = [a / b for _, a, b, _ in bad.comparisons[0].worst]
  assert all(1.3 < r <= 2.0 + 1e-6 for r in ratios), ratios


def test_a_function_whose_value_is_nan_where_it_is_checked_is_named_not_reported_as_nan():
  with pytest.raises(ValueError, match=r'log_of: the value at the checked point is nan'):
    gradcheck.check_function_gradients(
      lambda w: jnp.sum(jnp.log(w)), jnp.asarray([-1.0, 2.0]), None, name='log_of'
    )


def test_gradcheck_of_a_loss_whose_value_is_nan_answers_in_one_line(refused):
  out, path = refused['NAN']
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert out.stderr.strip().splitlines() == [
    f"Error: Loss '{path}:NAN': field 'value' returned non-finite values on finite scores."
  ]


def test_a_flag_error_is_one_line_without_absl_prefix(tmp_path, capsys):
  from experiments import common  # pylint: disable=import-outside-toplevel

  fv = flags.FlagValues()
  flags.DEFINE_enum('method', 'central', ('central', 'forward'), 'How.', flag_values=fv)
  flags.DEFINE_string('loss', 'svm', 'Which loss.', flag_values=fv)
  flags.DEFINE_float('h', None, 'Step.', flag_values=fv)
  flags.register_validator('h', lambda h: h is None or h < 1, message='--h must be < 1.', flag_values=fv)
  flags.register_multi_flags_validator(
    ['loss', 'method'],
    lambda f: f['loss'] != 'no.py:X',
    message=f"Loss 'no.py:X': {tmp_path}/no.py defines no 'X'.",
    flag_values=fv,
  )
  cases = {
    '--loss=no.py:X': f"Error: Loss 'no.py:X': {tmp_path}/no.py defines no 'X'.",
    '--method=both': 'Error: --method=both: value should be one of <central|forward>',
    '--h=2': 'Error: --h must be < 1.',
    '--nosuch=1': "Error: Unknown command line flag 'nosuch'",
  }
  for arg, line in cases.items():
    with pytest.raises(SystemExit) as stop:
      common.parse_flags(['prog', arg], fv)
    fv.unparse_flags()
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.startswith(line), (arg, err)
    assert err.count('\n') == 1 and 'FATAL' not in err and 'flags loss=' not in err, err
  # Two flags wrong at once: absl joins its validators' messages over two lines, each with its prefix.
  with pytest.raises(SystemExit):
    common.parse_flags(['prog', '--h=2', '--loss=no.py:X'], fv)
  fv.unparse_flags()
  err = capsys.readouterr().err
  assert (
    err.startswith('Error: ') and err.count('\n') == 1 and 'flags ' not in err and 'flag --' not in err
  ), err
  assert '--h must be < 1.' in err and "no.py defines no 'X'." in err, err
  assert common.parse_flags(['prog', '--method=forward'], fv) == ['prog']


@contextlib.contextmanager
def _unregistered(name):
  try:
    yield
  finally:
    losses.LOSSES.pop(name, None)


@pytest.mark.parametrize('grad', ['analytic', 'autodiff'])
def test_a_loss_whose_value_is_nan_for_one_label_is_named_before_training(grad):
  # A NaN for a label the loss's probe has none of (it tries 3 classes) was blamed on the score_grad
  # (analytic) or on the data's scale (autodiff).
  def value(s, y):
    return jnp.where(y == 3, jnp.nan, classification.softmax_cross_entropy(s, y))

  nan_label = lj.Loss(value, 'class', lambda s, y: classification.softmax_cross_entropy_score_grad(s, y))
  lj.register_loss('test_nan_for_label_3', nan_label, overwrite=True)
  ds = data.prepare(data.blobs(120, 2, 4, seed=0), 'blobs', seed=0)
  cfg = config.TrainConfig(loss='test_nan_for_label_3', grad=grad, epochs=1)
  with (
    _unregistered('test_nan_for_label_3'),
    pytest.raises(
      ValueError,
      match=r'its value is not finite \(nan\) on \d+ of \d+ training rows of blobs, '
      r'at the start, scores 0 \(the first: label 3\); check the value function',
    ),
  ):
    train.fit(cfg, ds)


def test_a_loss_written_for_one_number_of_classes_is_refused_naming_the_field():
  """A Brier score with `one_hot(y, 3)` passed the probe's three classes, then failed inside gradcheck's
  and train's compiled code on four (a JAX traceback); a regression loss fixed at two outputs too."""
  brier = lambda s, y: jnp.sum((jax.nn.softmax(s) - jax.nn.one_hot(y, 3)) ** 2, axis=1)
  with pytest.raises(ValueError, match=r"field 'value' raised TypeError: .* on scores \(5, 4\)"):
    lj.register_loss('test_brier_of_3', lj.Loss(value=brier, targets='class'))
  two = lambda s, t: jnp.sum((s - t) ** 2 * jnp.asarray([1.0, 2.0]), axis=1)
  with pytest.raises(ValueError, match=r"field 'value' raised ValueError: .* on scores \(5, 3\)"):
    lj.register_loss('test_two_outputs', lj.Loss(value=two, targets='real'))
  any_count = lambda s, y: jnp.sum((jax.nn.softmax(s) - jax.nn.one_hot(y, s.shape[1])) ** 2, axis=1)
  lj.register_loss('test_brier', lj.Loss(value=any_count, targets='class'))  # any number of classes
  assert losses.LOSSES.pop('test_brier') and 'test_brier_of_3' not in losses.LOSSES
