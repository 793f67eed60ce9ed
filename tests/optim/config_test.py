"""`TrainConfig.validate`: every number finite and representable in the training dtype."""

import jax.numpy as jnp
import numpy as np
import pytest

from linear_jax.optim import config


@pytest.mark.parametrize(
  'fields,message',
  [
    ({'learning_rate': 1e-50}, r'learning_rate=1e-50 rounds to 0 in float32, the training dtype'),
    ({'reg': 1e-320}, r'reg=9.99989e-321 rounds to 0 in float32'),
    ({'learning_rate': 1e300}, r'learning_rate=1e\+300 overflows float32, the training dtype'),
    ({'decay_epochs': float('inf')}, r'decay_epochs must be a finite number, got inf'),
    ({'tol': float('inf')}, r'tol must be a finite number, got inf'),
    ({'init_scale': float('nan')}, r'init_scale must be >= 0, got nan'),
    # A loss's hyperparameter too: a margin of 1e300 was inf in float32, and the run blamed the data.
    (
      {'loss': 'svm', 'loss_hparams': {'margin': 1e300}},
      r'margin=1e\+300 overflows float32, the training dtype',
    ),
    ({'loss': 'huber', 'loss_hparams': {'delta': 1e300}}, r'delta=1e\+300 overflows float32'),
    # 0.999999999 passes `< 1` and is 1 in float32: the velocity never decayed and the run learned nothing.
    ({'optimizer': 'momentum', 'momentum': 0.999999999}, r'momentum=0.999999999 rounds to 1 in float32'),
  ],
)
def test_numbers_that_vanish_overflow_or_are_not_finite_are_refused(fields, message):
  with pytest.raises(ValueError, match=message):
    config.TrainConfig(**fields).validate()


def test_a_momentum_is_held_to_its_dtype_where_an_optimizer_reads_it():
  config.TrainConfig(optimizer='momentum', momentum=0.999999999, dtype='float64').validate()  # it holds it
  config.TrainConfig(optimizer='adam', momentum=0.999999999).validate()  # adam reads no momentum
  with pytest.raises(ValueError, match='rounds to 1 in float32'):
    config.TrainConfig(optimizer='nesterov', momentum=0.999999999).validate()


@pytest.mark.parametrize(
  'fields,message',
  [
    # A non-empty string is true: stream='no' streamed, silently.
    ({'stream': 'no'}, r"stream must be True or False, got 'no' \(str\)"),
    ({'bias_trick': 'no'}, r'bias_trick must be True or False'),
    ({'epochs': '2'}, r"epochs must be a whole number \(int\), got '2' \(str\)"),
    ({'epochs': 2.5}, r'epochs must be a whole number \(int\), got 2.5'),  # failed inside jit
    ({'batch_size': 32.5}, r'batch_size must be a whole number'),
    ({'epochs': True}, r'epochs must be a whole number \(int\), got True \(bool\)'),  # ran 1 epoch
    ({'reg': '0.1'}, r"reg must be a number, got '0.1'"),
    ({'tol': 'x'}, r'tol must be a number or None'),
    ({'loss': 'svm', 'loss_hparams': {'margin': '1'}}, r'loss_hparams must be a mapping of names to numbers'),
    ({'explode_factor': 1e-30}, r'explode_factor must be > 1'),  # every run "exploded", the rate blamed
  ],
)
def test_a_field_of_another_type_is_refused_by_name(fields, message):
  with pytest.raises(ValueError, match=message):
    config.TrainConfig(**fields).validate()


def test_numpy_and_jax_numbers_and_none_where_allowed_are_accepted():
  config.TrainConfig(epochs=np.int64(3), reg=np.float32(0.1), tol=None, learning_rate='auto').validate()
  config.TrainConfig(
    learning_rate=jnp.logspace(-2, 0, 3)[1], reg=np.array(0.1), epochs=jnp.int32(2)
  ).validate()
  with pytest.raises(ValueError, match=r'epochs must be a whole number \(int\)'):
    config.TrainConfig(epochs=np.array(2.0)).validate()
  with pytest.raises(ValueError, match=r'loss_hparams must be a mapping of names to numbers, got None'):
    config.TrainConfig(loss_hparams=None)


def test_what_float64_holds_is_accepted_there():
  config.TrainConfig(learning_rate=1e-50, reg=1e-300, dtype='float64').validate()
  config.TrainConfig(loss='svm', loss_hparams={'margin': 1e300}, dtype='float64').validate()
  config.TrainConfig(reg=0.0, momentum=0.0, tol=None).validate()  # 0 and None are values, not vanished ones


def test_a_huber_delta_of_0_is_refused_it_would_make_every_loss_0():
  with pytest.raises(
    ValueError, match=r"Loss 'huber': hyperparameter 'delta' must be finite and >= 1e-12, got 0"
  ):
    config.TrainConfig(loss='huber', loss_hparams={'delta': 0.0}).validate()


def test_runs_differing_in_what_their_schedule_does_not_read_share_one_program():
  import dataclasses  # pylint: disable=import-outside-toplevel

  from linear_jax.data import datasets as data  # pylint: disable=import-outside-toplevel
  from linear_jax.optim import step  # pylint: disable=import-outside-toplevel
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  base = config.TrainConfig(epochs=3, decay_epochs=4.0)
  assert dataclasses.replace(base, epochs=7, decay_rate=0.3).structure() == base.structure()
  cosine = dataclasses.replace(base, schedule='cosine')
  assert dataclasses.replace(cosine, epochs=7).structure() != cosine.structure()
  decay = dataclasses.replace(base, schedule='step')
  assert dataclasses.replace(decay, decay_epochs=2.0).structure() != decay.structure()
  ds = data.prepare(data.blobs(120, 3, 3, seed=2), 'blobs', 0.2, 0.2, seed=2)
  train.fit(base, ds)
  compiled = step._epoch._cache_size()  # pylint: disable=protected-access
  longer = train.fit(dataclasses.replace(base, epochs=5), ds)
  assert step._epoch._cache_size() == compiled and len(longer.history) == 5  # pylint: disable=protected-access
