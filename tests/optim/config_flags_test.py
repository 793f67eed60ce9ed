"""The flags of the experiments against the config records they fill: names, defaults, help, choices, bounds.

`TrainConfig`, `experiment.DataConfig` and `experiment.RunOptions` are the one
source of truth: each field says its flag's help (and choices) in its metadata,
and `experiments.common.define_fields` makes the flags from the fields. These
tests fail when a field has no flag, a flag's default, help or choices differ
from its field's, or a flag accepts a value the record refuses; and they show
that a new field of a record gets its flag with no other edit.
`lr_sweep`'s list flags are held the same way to `sweep.BOUNDS`, the bounds of a
sweep's settings.
"""

import dataclasses
import json
import math
import os
import pathlib
import re
import subprocess
import sys

from absl import flags
import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.data.features import REPRESENTATIONS
from linear_jax.maths import grad_sources
from linear_jax.maths import losses
from linear_jax.optim import config
from linear_jax.optim import convergence
from linear_jax.runs import experiment
from linear_jax.tuning import sweep

ROOT = str(pathlib.Path(__file__).resolve().parents[2])

# Values just outside each bound, as flags; each must be refused by the flag and by the record.
OUT_OF_BOUNDS = {
  'learning_rate': 0.0,
  'reg': -1.0,
  'momentum': 1.0,
  'decay_rate': 0.0,
  'decay_epochs': 0.0,
  'tol': 0.0,
  'n_iter_no_change': 0,
  'init_scale': -1.0,
  'patience': -1,
  'num_devices': -1,
  'eval_every': 0,
  'block_rows': -1,
  'val_fraction': 1.0,
  'test_fraction': 1.0,
  'num_examples': 0,
  'num_features': 0,
  'num_classes': 1,
  'bins': 0,
}

# TrainConfig fields a command names otherwise, and why.
RENAMED = {'epochs': 'max_epochs'}  # experiments/train.py: a cap (--epochs is its alias)
NO_FLAG = {
  'explode_factor': 'a safety limit of the library; no command needs to change it',
}
# The fields in which the command line's run (`config.COMMAND_LINE`, the source of every flag's
# default) differs from `TrainConfig()`; docs/optimum.md says so too.
COMMAND_LINE_FIELDS = {'epochs', 'tol_on', 'reg', 'learning_rate', 'schedule', 'n_iter_no_change'}
ENUMS = {
  'penalty': tuple(losses.PENALTIES),
  'optimizer': config.OPTIMIZERS,
  'schedule': config.SCHEDULES,
  'grad': grad_sources.GRAD_SOURCES,
  'dtype': config.DTYPES,
  'parallel': config.PARALLEL,
  'tol_on': convergence.TOL_ON,
  'dataset': data.DATASETS,
  'delimiter': experiment.DELIMITERS,
  'class_weight': experiment.CLASS_WEIGHTS,
  'preprocess': data.PREPROCESSING,
  'features': REPRESENTATIONS,
}

_DUMP = r"""
import importlib, json, sys
from absl import flags
module = importlib.import_module(sys.argv[1])
FLAGS = flags.FLAGS
out = {}
for name, flag in FLAGS._flags().items():
  if name != flag.name:
    continue  # a short name or alias
  choices = getattr(flag.parser, 'enum_values', None)
  out[name] = {'default': flag.default, 'choices': choices, 'help': flag.help}
refused = {}
for name, value in json.loads(sys.argv[2]).items():
  if name not in out:
    continue
  try:
    FLAGS(['prog', f'--{name}={value}'])
    refused[name] = False
  except flags.Error:
    refused[name] = True
  FLAGS.unparse_flags()
print(json.dumps({'flags': out, 'refused': refused}))
"""


@pytest.fixture(scope='module', params=['experiments.train', 'experiments.lr_sweep'])
def command(request):
  """`(module, {'flags': {name: {'default', 'choices'}}, 'refused': {name: bool}})` of one experiment."""
  proc = subprocess.run(
    [sys.executable, '-c', _DUMP, request.param, json.dumps(OUT_OF_BOUNDS)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  )
  return request.param, json.loads(proc.stdout.strip().splitlines()[-1])


def _flag_name(module, field):
  return RENAMED.get(field, field) if module == 'experiments.train' else field


def test_every_train_config_field_has_a_flag_with_its_default(command):
  module, got = command
  for field in dataclasses.fields(config.TrainConfig):
    if field.name in NO_FLAG or (
      module != 'experiments.train' and field.name in ('tol_on', 'n_iter_no_change')
    ):
      continue  # lr_sweep runs a fixed count: only --tol
    name = _flag_name(module, field.name)
    assert name in got['flags'], f'{module}: TrainConfig.{field.name} has no flag --{name}'
    # The command line's run, except the sweeps' fixed --epochs and constant rate, TrainConfig()'s.
    source = (
      config.TrainConfig()
      if module != 'experiments.train' and field.name in ('epochs', 'schedule')
      else config.COMMAND_LINE
    )
    default = getattr(source, field.name)
    if field.name == 'loss_hparams':
      assert got['flags'][name]['default'] == [] and default == {}
      continue
    assert got['flags'][name]['default'] == default, f'{module}: --{name} default differs from the field'


def test_the_command_line_run_differs_from_train_config_only_where_documented():
  ours, python = dataclasses.asdict(config.COMMAND_LINE), dataclasses.asdict(config.TrainConfig())
  assert {k for k in ours if ours[k] != python[k]} == COMMAND_LINE_FIELDS
  config.COMMAND_LINE.validate()
  assert config.COMMAND_LINE.tol_on == 'objective' and python['tol_on'] == 'none'
  manual = open(os.path.join(ROOT, 'docs', 'optimum.md'), encoding='utf-8').read()  # its "Convergence"
  assert "`TrainConfig(tol_on='none')` is the default" in manual
  assert 'config.COMMAND_LINE' in manual


def test_data_and_run_records_match_their_flags(command):
  module, got = command
  for field in dataclasses.fields(experiment.DataConfig):
    assert field.name in got['flags'], f'{module}: DataConfig.{field.name} has no flag'
    assert got['flags'][field.name]['default'] == field.default, f'--{field.name} default differs'
  if module == 'experiments.train':
    for field in dataclasses.fields(experiment.RunOptions):
      assert got['flags'][field.name]['default'] == field.default, f'--{field.name} default differs'


def test_enum_flags_offer_exactly_what_the_records_accept(command):
  module, got = command
  for name, choices in ENUMS.items():
    if name not in got['flags']:
      continue
    offered = tuple(choices)
    if module != 'experiments.train' and name == 'schedule':  # a sweep's settings train a fixed count
      offered = tuple(c for c in choices if c != 'adaptive')
    assert tuple(got['flags'][name]['choices']) == offered, f'{module}: --{name} choices'
  for name in ('penalty', 'optimizer', 'schedule', 'grad', 'dtype', 'parallel', 'tol_on'):
    for value in ENUMS[name]:
      if (name, value) in (('dtype', 'float64'), ('optimizer', 'lbfgs')):
        continue  # need x64 / a smooth objective; their own tests cover them
      config.TrainConfig(**{name: value}).validate()
    with pytest.raises(ValueError, match=name):
      config.TrainConfig(**{name: 'no_such'}).validate()
  for name in ('dataset', 'delimiter', 'class_weight', 'preprocess', 'features'):
    with pytest.raises(ValueError, match=name):
      experiment.DataConfig(**{name: 'no_such'}).validate()


# Flags whose help this command says otherwise than the field: lr_sweep's --epochs is a fixed count.
OWN_HELP = {('experiments.lr_sweep', 'epochs')}


def test_every_flag_of_a_field_has_the_help_its_field_says(command):
  module, got = command
  records = (config.TrainConfig, experiment.DataConfig) + (
    (experiment.RunOptions,) if module == 'experiments.train' else ()
  )
  for record in records:
    for field in dataclasses.fields(record):
      help_text = field.metadata.get('help')
      assert help_text, f'{record.__name__}.{field.name} has no help in its metadata'
      name = _flag_name(module, field.name)
      if name not in got['flags'] or (module, field.name) in OWN_HELP:
        continue
      # An enum's help starts with its choices, `<a|b|c>: `.
      assert got['flags'][name]['help'].endswith(help_text), f'{module}: --{name} help'
      if 'choices' in field.metadata:
        choices = tuple(field.metadata['choices'])
        if module != 'experiments.train' and name == 'schedule':  # a sweep's settings train a fixed count
          choices = tuple(c for c in choices if c != 'adaptive')
        assert tuple(got['flags'][name]['choices']) == choices


def test_flags_and_records_refuse_the_same_out_of_bound_values(command):
  module, got = command
  train_fields = {f.name for f in dataclasses.fields(config.TrainConfig)}
  if module == 'experiments.train':
    assert set(got['refused']) == set(OUT_OF_BOUNDS)  # every bound probed
  for name, value in OUT_OF_BOUNDS.items():
    if name not in got['refused']:
      continue
    assert got['refused'][name], f'{module}: --{name}={value} was accepted'
    record = config.TrainConfig if name in train_fields else experiment.DataConfig
    with pytest.raises(ValueError, match=name):
      record(**{name: value}).validate()


# lr_sweep's list flags and the hyperparameter of a sweep's setting each one fills.
LIST_FLAGS = {'lrs': 'learning_rate', 'regs': 'reg', 'momenta': 'momentum', 'seeds': 'seed'}

_MESSAGES = r"""
import importlib, json, sys
from absl import flags
importlib.import_module(sys.argv[1])
out = []
for argv in json.loads(sys.argv[2]):
  try:
    flags.FLAGS(['prog'] + argv)
    out.append('accepted')
  except flags.Error as e:
    out.append(str(e))
  flags.FLAGS.unparse_flags()
print(json.dumps(out))
"""


def _just_outside_and_inside(bound):
  """`(outside, inside)`: the values next to each end of `bound`, on either side of it."""
  if bound.kind is int:
    nxt = lambda v, direction: v + direction
  else:
    nxt = lambda v, direction: float(np.nextafter(v, direction * math.inf))
  outside = [bound.low if bound.low_open else nxt(bound.low, -1)]
  inside = [nxt(bound.low, 1) if bound.low_open else bound.low]
  if math.isfinite(bound.high):
    outside.append(bound.high if bound.high_open else nxt(bound.high, 1))
    inside.append(nxt(bound.high, -1) if bound.high_open else bound.high)
  if bound.kind is float:
    outside += [math.inf, math.nan]  # only finite numbers
  return outside, inside


def test_lr_sweep_list_flags_refuse_just_outside_each_library_bound():
  assert set(LIST_FLAGS.values()) == set(sweep.BOUNDS)  # every bound of a setting has its flag
  cases = []
  for flag, name in LIST_FLAGS.items():
    outside, inside = _just_outside_and_inside(sweep.BOUNDS[name])
    cases += [(flag, name, v, False) for v in outside] + [(flag, name, v, True) for v in inside]
  proc = subprocess.run(
    [
      sys.executable,
      '-c',
      _MESSAGES,
      'experiments.lr_sweep',
      # Momenta are swept only for an optimizer that reads them. In float64, which holds each value next
      # to a bound (5e-324 is 0 in float32, the largest float64 below 1 is 1 there: refused for that).
      json.dumps(
        [
          [f'--{f}={v!r}', '--dtype=float64', *(['--optimizer=momentum'] if f == 'momenta' else [])]
          for f, _, v, _ in cases
        ]
      ),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  )
  messages = json.loads(proc.stdout.strip().splitlines()[-1])
  for (flag, name, value, admitted), message in zip(cases, messages, strict=True):
    bound = sweep.BOUNDS[name]
    setting = {'learning_rate': 0.1, 'reg': 0.0, name: value}
    if admitted:
      assert message == 'accepted', (flag, value, message)
      sweep.check_grid([setting], dtype='float64')
      continue
    # The flag names itself and the library's bound in the library's words; the library refuses it too.
    assert f'--{flag} must' in message and bound.describe() in message, (flag, value, message)
    with pytest.raises(ValueError) as refused:
      sweep.check_grid([setting])
    assert f'{bound.plural} must be' in str(refused.value) and bound.describe() in str(refused.value)


@dataclasses.dataclass(frozen=True)
class _Small:
  """A record as a new one (or a record with new fields) would be: one field of each kind."""

  rate: float = dataclasses.field(default=0.5, metadata={'help': 'A rate, in (0, 1].', 'group': 'model'})
  count: int = dataclasses.field(default=3, metadata={'help': 'How many, >= 1.'})
  name: str = dataclasses.field(default='a', metadata={'help': 'Which.', 'choices': ('a', 'b')})
  path: str | None = dataclasses.field(default=None, metadata={'help': 'Where.'})
  on: bool = dataclasses.field(default=True, metadata={'help': 'Whether.'})
  limit: float | None = dataclasses.field(default=None, metadata={'help': 'At most, > 0.'})
  hparams: dict[str, float] = dataclasses.field(default_factory=dict, metadata={'help': 'NAME=VALUE,...'})
  hidden: float = dataclasses.field(default=1.0, metadata={'help': 'Not a flag.', 'flag': False})

  def validate(self):
    if not 0 < self.rate <= 1:
      raise ValueError(f'rate must be in (0, 1], got {self.rate}.')
    if not self.count >= 1:
      raise ValueError(f'count must be >= 1, got {self.count}.')
    return self


def _small_flags(**overrides):
  from experiments import common  # pylint: disable=import-outside-toplevel

  values = flags.FlagValues()
  common.define_fields(_Small, flag_values=values, **overrides)
  return values, common


def test_a_new_field_gets_its_flag_from_its_metadata_with_no_other_edit():
  values, common = _small_flags()
  assert set(values) == {'rate', 'count', 'name', 'path', 'on', 'limit', 'hparams'}  # not `hidden`
  for field in dataclasses.fields(_Small):
    if field.name != 'hidden':
      assert values[field.name].help.endswith(field.metadata['help'])
  assert values['name'].parser.enum_values == ['a', 'b']
  assert common.GROUPS['rate'] == 'model' and common.GROUPS['count'] == 'run'  # a record of no group: Run
  values(['prog', '--rate=0.25', '--count=7', '--name=b', '--path=x.csv', '--noon', '--hparams=delta=2'])
  got = common.record_from_flags(_Small, values)
  assert got == _Small(rate=0.25, count=7, name='b', path='x.csv', on=False, hparams=['delta=2'])
  values.unparse_flags()
  values(['prog'])
  assert common.record_from_flags(_Small, values) == _Small(hparams=[])  # the defaults are the field's


@pytest.mark.parametrize(
  'argv, message',
  [
    ('--rate=0', '--rate must be in (0, 1], got 0.0.'),  # the record's validate(), the flag named
    ('--count=0', '--count must be >= 1, got 0.'),
    ('--name=c', 'value should be one of <a|b>'),
    ('--count=x', 'flag --count=x: invalid literal for int()'),
  ],
)
def test_a_new_field_is_checked_by_its_records_validate(argv, message):
  values, _ = _small_flags()
  with pytest.raises(flags.Error, match=re.escape(message)):
    values(['prog', argv])


def test_a_command_can_rename_a_field_and_change_its_default():
  values, common = _small_flags(
    count={'name': 'max_count', 'alias': 'count', 'default': 9}, rate={'validate': False}
  )
  assert values['max_count'].default == 9 and values['count'].default == 9
  values(['prog', '--count=4', '--rate=0'])  # the alias sets it; `rate` is this command's to check
  assert values.max_count == 4 and values.rate == 0.0
  assert common.GROUPS['count'] == common.GROUPS['max_count']
