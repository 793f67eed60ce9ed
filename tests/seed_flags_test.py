"""Seeds are integers in [0, 2**32): one outside (a 64-bit or wider one) is one line, never a traceback."""

import json
import os
import subprocess
import sys

import pytest

from linear_jax.maths import validation
from linear_jax.optim import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = [2**70, 2**64, 2**32, -1]


def test_a_seed_outside_32_bits_is_refused_by_the_config_and_the_check():
  for seed in BAD:
    with pytest.raises(ValueError, match=rf'seed must be an integer in \[0, 2\*\*32\), got {seed}\.'):
      config.TrainConfig(seed=seed).validate()
  with pytest.raises(ValueError, match='got 1.5'):
    validation.check_seed('seed', 1.5)
  config.TrainConfig(seed=2**32 - 1).validate()  # the largest seed is accepted


SCRIPT = (
  'import importlib, json, sys\n'
  'from absl import flags\n'
  'importlib.import_module(sys.argv[1])\n'
  'out = []\n'
  'for seed in json.loads(sys.argv[2]):\n'
  '  try:\n'
  "    flags.FLAGS(['prog', f'--seed={seed}'])\n"
  "    out.append('accepted')\n"
  '  except flags.Error as e:\n'
  '    out.append(str(e))\n'
  '  flags.FLAGS.unparse_flags()\n'
  'print(json.dumps(out))\n'
)


# train, search, gradcheck and optimizers take --seed from the config's field; the others define their own.
@pytest.mark.parametrize('module', ['experiments.train', 'experiments.hard_cases', 'experiments.report'])
def test_every_seed_flag_refuses_a_seed_outside_32_bits_in_one_line(module):
  res = subprocess.run(
    [sys.executable, '-c', SCRIPT, module, json.dumps([*BAD, 7])],
    cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
  )  # fmt: skip
  messages = json.loads(res.stdout.strip().splitlines()[-1])
  for seed, message in zip(BAD, messages[:-1], strict=True):
    assert message.endswith(f'--seed must be an integer in [0, 2**32), got {seed}.'), (module, message)
  assert messages[-1] == 'accepted'


def test_each_command_defining_its_own_seed_flag_checks_it():
  """A command that defines --seed itself (not from the config's field) registers the same check."""
  folder = os.path.join(ROOT, 'experiments')
  for name in sorted(os.listdir(folder)):
    text = open(os.path.join(folder, name)).read() if name.endswith('.py') else ''
    if "DEFINE_integer('seed'" in text:
      assert "common.validate_as_field('seed')" in text, name
