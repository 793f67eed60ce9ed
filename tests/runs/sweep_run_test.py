"""`sweep_run.sweep_and_write`: the grid's axes are checked before any model trains."""

import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.runs import sweep_run


@pytest.mark.parametrize(
  ('axes', 'named'),
  [
    ({'lrs': [0.1, 0.1], 'regs': [0.0]}, 'lrs [0.1, 0.1]'),
    ({'lrs': [0.1], 'regs': [0.0, 1e-3, 0.0]}, 'regs [0.0, 0.001, 0.0]'),
    ({'lrs': [0.1], 'regs': [0.0], 'seeds': [3, 3]}, 'seeds [3, 3]'),
    ({'lrs': [0.1], 'regs': [0.0], 'loss_hparams': {'margin': [1.0, 1.0]}}, 'margin [1.0, 1.0]'),
  ],
)
def test_a_repeated_value_of_an_axis_is_refused_before_training(tmp_path, axes, named):
  # The pictures are [L] x [R] grids: a repeat used to fail only after the whole sweep had trained.
  earlier = tmp_path / 'sweep.json'
  earlier.write_text('{"from": "the last run"}')
  ds = data.prepare(data.blobs(60, 2, 3, seed=0), 'blobs')
  cfg = config.TrainConfig(epochs=1, batch_size=20, loss='svm')
  with pytest.raises(ValueError, match='repeat a value; each is one point of the grid') as e:
    sweep_run.sweep_and_write(cfg, ds, str(tmp_path), **axes)
  assert named in str(e.value)
  assert earlier.read_text() == '{"from": "the last run"}'  # nothing trained, nothing removed


def test_a_workdir_holds_the_last_runs_outputs_only_sweep_or_path(tmp_path):
  # A path written where a sweep had been left its sweep.json and heatmap beside path.json, and back.
  ds = data.prepare(data.blobs(60, 2, 2, seed=0), 'blobs', val_fraction=0.25)
  cfg = config.TrainConfig(epochs=1, batch_size=20, loss='logistic')
  ckpt = str(tmp_path / 'sweep_checkpoint.npz')
  sweep_run.sweep_and_write(cfg, ds, str(tmp_path), lrs=[0.1], regs=[0.0, 1e-3], checkpoint_path=ckpt)
  assert {'sweep.json', 'sweep.csv', 'heatmap.png', 'sweep_checkpoint.npz'} <= {
    p.name for p in tmp_path.iterdir()
  }
  sweep_run.path_and_write(cfg, ds, str(tmp_path), regs=[1e-3, 1e-2], max_iter=50)
  assert {p.name for p in tmp_path.iterdir()} == set(sweep_run.PATH_OUTPUTS)  # the checkpoint too is gone
  (tmp_path / 'sweep.json').write_text('{}')  # a sweep resumed here keeps its own, and not the path's
  sweep_run.sweep_and_write(cfg, ds, str(tmp_path), lrs=[0.1], regs=[0.0], checkpoint_path=ckpt, resume=True)
  assert not set(sweep_run.PATH_OUTPUTS) & {p.name for p in tmp_path.iterdir()}
  sweep_run.sweep_and_write(cfg, ds, str(tmp_path), lrs=[0.1], regs=[0.0])
  assert not set(sweep_run.PATH_OUTPUTS) & {p.name for p in tmp_path.iterdir()}


def test_a_path_says_its_refit_and_what_it_measured_even_without_a_test_split():
  # --refit's result was in path.json alone; without a test split the new line ended in an empty list.
  out = {
    'optimizer': 'lbfgs', 'num_models': 2, 'seconds': 1.0, 'fevals': 30, 'chosen_by': 'val_accuracy',
    'models': [{'converged': True}] * 2, 'best': {'reg': 0.01, 'val_accuracy': 0.96},
    'refit': {'train_examples': 455, 'reg': 0.01, 'final': {'train_loss': 0.1, 'test_accuracy': 0.9825}},
  }  # fmt: skip
  assert sweep_run.result_lines(out, 'w')[-1] == (
    'refit on train + validation (455 rows) at reg=0.01: test_accuracy=0.9825'
  )
  out['refit']['final'] = {'train_loss': 0.1, 'train_accuracy': 0.97}
  assert sweep_run.result_lines(out, 'w')[-1] == (
    'refit on train + validation (455 rows) at reg=0.01 (no test split to measure it on)'
  )
  del out['refit']
  assert sweep_run.result_lines(out, 'w')[-1].startswith('best: reg=0.01 val_accuracy=0.9600')


def test_a_retrained_best_says_so_even_without_a_test_split():
  # lr_sweep --retrain_best with --test_fraction=0 printed 'best retrained alone: ' and nothing after it.
  out = {
    'num_models': 2, 'epochs': 3, 'seconds': 1.0, 'models': [{'diverged_step': None}] * 2,
    'best': {'learning_rate': 0.1, 'reg': 0.0, 'best_val_accuracy': 0.9},
    'best_retrained': {'train_loss': 0.2, 'test_loss': 0.3, 'test_accuracy': 0.875},
  }  # fmt: skip
  assert (
    sweep_run.result_lines(out, 'w')[-2] == 'best retrained alone: test_loss=0.3000, test_accuracy=0.8750'
  )
  out['best_retrained'] = {'train_loss': 0.2, 'train_accuracy': 0.95}
  assert sweep_run.result_lines(out, 'w')[-2] == 'best retrained alone (no test split to measure it on)'


def test_a_sweep_stopped_while_retraining_its_best_stops_and_reports_no_half_trained_result(
  tmp_path, monkeypatch
):
  # The retrained run, stopped by SIGTERM, was printed and saved as the best setting's test metric, exit 0.
  from linear_jax.training import preemption
  from linear_jax.training import train

  fit = train.fit
  stopping = lambda *a, **k: (monkeypatch.setattr(preemption, 'stop_requested', lambda: True), fit(*a, **k))[
    1
  ]
  monkeypatch.setattr(train, 'fit', stopping)
  ds = data.prepare(data.blobs(120, 2, 3, seed=0), 'blobs')
  with pytest.raises(preemption.Stopped, match='while retraining its best setting alone'):
    sweep_run.sweep_and_write(
      config.TrainConfig(epochs=4), ds, str(tmp_path), [0.1, 0.3], [0.0], retrain_best=True,
      checkpoint_path=str(tmp_path / 'sweep_checkpoint.npz'),
    )  # fmt: skip
  assert not (tmp_path / 'sweep.json').exists()
