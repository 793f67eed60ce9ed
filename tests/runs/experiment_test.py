"""experiment.train_and_evaluate: the whole run of experiments/train.py as a library call."""

import json
import os

import numpy as np
import pytest

from linear_jax.optim import config
from linear_jax.optim import results
from linear_jax.runs import experiment
from linear_jax.training import train


def test_train_and_evaluate_writes_what_fit_gives(tmp_path):
  cfg = config.TrainConfig(epochs=3, batch_size=32)
  data_cfg = experiment.DataConfig(dataset='breast_cancer')
  summary = experiment.train_and_evaluate(cfg, data_cfg, str(tmp_path), experiment.RunOptions(plots=False))
  ds = experiment.load_dataset(data_cfg)
  result = train.fit(cfg, ds)
  lines = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [m['train_pass_loss'] for m in lines] == [m['train_pass_loss'] for m in result.history]
  assert summary == json.loads((tmp_path / 'summary.json').read_text())
  assert summary['epochs_run'] == 3 and summary['stop_reason'] == 'max_epochs'
  saved = np.load(tmp_path / 'params.npz')
  w_raw, b_raw = train.raw_params(result.params, ds)
  np.testing.assert_allclose(saved['W'], w_raw, rtol=1e-6)
  # NumPy alone, on the raw test inputs, gives the accuracy the summary reports.
  x_raw = ds.shift + ds.scale * ds.x_test
  accuracy = np.mean(np.argmax(x_raw @ saved['W'].T + saved['b'], 1) == ds.y_test)
  assert summary['final']['test_accuracy'] == pytest.approx(accuracy, abs=1e-6)
  assert not (tmp_path / 'curves.png').exists()


def test_a_diverged_run_leaves_a_summary_that_says_so(tmp_path):
  cfg = config.TrainConfig(loss='l2', learning_rate=100.0, epochs=5)
  with pytest.raises(results.Diverged):
    experiment.train_and_evaluate(cfg, experiment.DataConfig(dataset='diabetes'), str(tmp_path))
  assert json.loads((tmp_path / 'summary.json').read_text())['stop_reason'] == 'diverged'


def test_a_bad_data_config_is_refused_before_any_work(tmp_path):
  with pytest.raises(ValueError, match=r'val_fraction must be in \[0, 1\), got 1.0'):
    experiment.train_and_evaluate(
      config.TrainConfig(), experiment.DataConfig(val_fraction=1.0), str(tmp_path)
    )
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('name', experiment.OUTPUTS)
def test_an_output_name_that_is_a_folder_is_refused_before_training(tmp_path, name):
  (tmp_path / name).mkdir()
  with pytest.raises(ValueError, match=rf'{name} is a folder, where the run writes its file {name}'):
    experiment.train_and_evaluate(config.TrainConfig(epochs=1), experiment.DataConfig(), str(tmp_path))
  assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing trained, nothing written


def test_a_link_to_a_folder_at_an_output_name_is_replaced_and_the_folder_left_alone(tmp_path):
  # It was refused as 'params.npz is a folder', where a link to a file is replaced as every output's is.
  work, elsewhere = tmp_path / 'work', tmp_path / 'elsewhere'
  work.mkdir()
  elsewhere.mkdir()
  (elsewhere / 'mine.txt').write_text('mine')
  (work / 'params.npz').symlink_to(elsewhere)
  options = experiment.RunOptions(plots=False)
  experiment.train_and_evaluate(config.TrainConfig(epochs=1), experiment.DataConfig(), str(work), options)
  assert (work / 'params.npz').is_file() and not (work / 'params.npz').is_symlink()
  assert os.listdir(elsewhere) == ['mine.txt']


def test_json_outputs_are_valid_json_written_whole(tmp_path):
  path = tmp_path / 'summary.json'
  experiment.write_json(str(path), {'final': {'test_mse': float('inf'), 'loss': float('nan'), 'ok': 1.5}})
  text = path.read_text()
  assert json.loads(text) == {'final': {'test_mse': None, 'loss': None, 'ok': 1.5}}  # strict JSON: null
  with pytest.raises(TypeError):
    experiment.write_json(str(path), {'final': {1, 2}})  # fails half-way through the dump
  assert path.read_text() == text  # the old file is whole, and no temporary file is left
  assert sorted(p.name for p in tmp_path.iterdir()) == ['summary.json']


def test_a_refused_resume_deletes_none_of_the_runs_outputs(tmp_path):
  """A resume refused (other data) keeps the finished run's summary, parameters and metrics as they were."""
  cfg = config.TrainConfig(epochs=2, batch_size=32)
  options = experiment.RunOptions(plots=False)
  experiment.train_and_evaluate(cfg, experiment.DataConfig(dataset='blobs'), str(tmp_path), options)
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith('.')}
  assert {'summary.json', 'params.npz', 'metrics.jsonl', 'checkpoint.npz'} <= set(before)
  other = experiment.DataConfig(dataset='blobs', val_fraction=0.3)
  with pytest.raises(ValueError, match='trained on other data'):
    experiment.train_and_evaluate(cfg, other, str(tmp_path), experiment.RunOptions(plots=False, resume=True))
  assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith('.')} == before


@pytest.mark.parametrize('phase', ['first', 'refit'])
def test_a_run_stopped_before_or_during_its_refit_is_interrupted_and_keeps_no_half_trained_refit(
  tmp_path, monkeypatch, phase
):
  # Stopped during the refit, the run exited 0 with the half-trained refit saved as its result; stopped
  # before it, it still refitted for about one epoch.
  from linear_jax.training import preemption
  from linear_jax.training import refit

  stop = lambda: monkeypatch.setattr(preemption, 'stop_requested', lambda: True)
  refits = []
  if phase == 'first':
    stop()
  else:
    first_fit = refit.refit
    monkeypatch.setattr(refit, 'refit', lambda *a: (stop(), refits.append(a[2].best_epoch), first_fit(*a))[2])
  cfg = config.TrainConfig(epochs=30, batch_size=32, learning_rate=0.01)  # a refit of more than one epoch
  options = experiment.RunOptions(refit=True, plots=False)
  summary = experiment.train_and_evaluate(
    cfg, experiment.DataConfig(dataset='breast_cancer'), str(tmp_path), options
  )
  assert summary['interrupted'] is True and summary['refit'] is None and summary['saved_params'] != 'refit'
  assert json.loads((tmp_path / 'summary.json').read_text())['interrupted'] is True
  assert refits == ([] if phase == 'first' else [refits[0]]) and (phase == 'first' or refits[0] > 1)
