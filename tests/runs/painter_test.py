"""The pictures' process: its pictures are the bytes drawing here gives, its errors are raised here with
their type, a child that ended early costs no picture, Ctrl-C does not end it, and it is always reaped.

The painters are started as a command starts one, before any JAX work: in a fresh process (one for the
module) that imported the library and nothing else.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from linear_jax.runs import painter
from linear_jax.runs import plots

HISTORY = [
  {'epoch': e, 'train_loss': 2.0 / e, 'val_loss': 2.5 / e, 'train_accuracy': 1 - 0.5 / e, 'val_accuracy': 0.4}
  for e in range(1, 7)
]
W = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)

SCRIPT = """
import json, os, signal, sys, time
import numpy as np
from linear_jax.runs import painter

out, history, w = sys.argv[1], json.loads(sys.argv[2]), np.asarray(json.loads(sys.argv[3]), np.float32)
fine, failing, ended, interrupted, closed = (painter.start() for _ in range(5))  # before any JAX work
import jax.numpy as jnp

said = {}
fine.draw('curves', history, f'{out}/curves.png', 'a title')
fine.draw('templates', jnp.asarray(w), (4, 4), f'{out}/templates.png', ['a', 'b', 'c'])  # a JAX array
fine.finish()
said['drawn_here'] = 'matplotlib' in sys.modules  # the child drew them
failing.draw('curves', history, f'{out}/before_the_error.png', 'a title')
failing.draw('curves', history, f'{out}/no_such_folder/curves.png', 'a title')
try:
  failing.finish()
except Exception as e:
  said['error'] = [type(e).__module__, type(e).__name__, str(e)]
os.kill(ended._pid, signal.SIGKILL)
ended.draw('curves', history, f'{out}/ended.png', 'a title')
ended.finish()
os.kill(interrupted._pid, signal.SIGINT)
time.sleep(0.3)
said['state_after_ctrl_c'] = open(f'/proc/{interrupted._pid}/stat').read().rsplit(')', 1)[1].split()[0]
interrupted.draw('curves', history, f'{out}/interrupted.png', 'a title')
interrupted.finish()
closed.draw('curves', history, f'{out}/closed.png', 'a title')
closed.close()  # without finish(): what it was given is drawn before it ends


def parent(pid):
  try:
    with open(f'/proc/{pid}/stat') as f:
      return int(f.read().rsplit(')', 1)[1].split()[1])
  except OSError:
    return None
said['children'] = [p for p in os.listdir('/proc') if p.isdigit() and parent(p) == os.getpid()]  # zombies too
print(json.dumps(said))
"""


@pytest.fixture(scope='module')
def painted(tmp_path_factory):
  out = tmp_path_factory.mktemp('painted')
  root = pathlib.Path(__file__).resolve().parents[2]
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(root), os.environ.get('PYTHONPATH')]))}
  done = subprocess.run(
    [sys.executable, '-c', SCRIPT, str(out), json.dumps(HISTORY), json.dumps(W.tolist())],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert done.returncode == 0 and not done.stderr, done.stderr[-3000:]
  return out, json.loads(done.stdout.splitlines()[-1])


def test_its_pictures_are_the_bytes_drawing_here_gives(painted, tmp_path):
  out, said = painted
  assert not said['drawn_here']  # the run never imported matplotlib: the child drew
  plots.curves(HISTORY, str(tmp_path / 'curves.png'), 'a title')
  plots.templates(W, (4, 4), str(tmp_path / 'templates.png'), ['a', 'b', 'c'])
  for name in ('curves.png', 'templates.png'):
    assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_an_error_is_raised_in_the_run_with_its_type_and_the_pictures_before_it_are_drawn(painted):
  out, said = painted
  module, name, message = said['error']
  assert (module, name) == ('linear_jax.training.files', 'WriteError')
  assert 'no_such_folder' in message
  assert (out / 'before_the_error.png').exists()
  assert not (out / 'no_such_folder').exists()


class _TwoArguments(Exception):
  def __init__(self, path, why):
    super().__init__(f'{path}: {why}')


def test_an_error_that_pickles_is_sent_as_itself_with_its_traceback_else_as_its_text():
  try:
    raise ValueError('a bad picture')
  except ValueError as e:
    sent = painter._sendable(e)  # noqa: SLF001 - what the child sends back
  assert type(sent) is ValueError and str(sent) == 'a bad picture'
  assert 'painter process' in sent.__notes__[0] and 'raise ValueError' in sent.__notes__[0]
  try:
    raise _TwoArguments('/x.png', 'no room')
  except _TwoArguments as e:
    sent = painter._sendable(e)  # noqa: SLF001
  assert type(sent) is RuntimeError and '_TwoArguments: /x.png: no room' in str(sent)


def test_a_child_that_ended_early_got_ctrl_c_or_was_closed_costs_no_picture(painted, tmp_path):
  out, said = painted
  assert said['state_after_ctrl_c'] in ('S', 'R')  # still waiting for pictures, not ended by Ctrl-C
  plots.curves(HISTORY, str(tmp_path / 'curves.png'), 'a title')
  for name in ('ended.png', 'interrupted.png', 'closed.png'):
    assert (out / name).read_bytes() == (tmp_path / 'curves.png').read_bytes(), name


def test_every_child_is_reaped(painted):
  _, said = painted
  assert said['children'] == []
