"""`TrainConfig.validate`: every number finite and representable in the training dtype."""

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
  ],
)
def test_numbers_that_vanish_overflow_or_are_not_finite_are_refused(fields, message):
  with pytest.raises(ValueError, match=message):
    config.TrainConfig(**fields).validate()


def test_what_float64_holds_is_accepted_there():
  config.TrainConfig(learning_rate=1e-50, reg=1e-300, dtype='float64').validate()
  config.TrainConfig(reg=0.0, momentum=0.0, tol=None).validate()  # 0 and None are values, not vanished ones
