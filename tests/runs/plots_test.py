"""linear_jax/runs/plots.py: pictures drawn on matplotlib's object API, with no global pyplot state."""

from concurrent import futures
import subprocess
import sys

import numpy as np

from linear_jax.runs import plots


def _draw_all(out, seed):
  """Draws one of each kind of picture into `out`; returns their paths."""
  r = np.random.default_rng(seed)
  history = [
    {'epoch': e, 'train_loss': 1 / e, 'val_loss': 1.2 / e, 'train_accuracy': 1 - 1 / (e + 1)} for e in (1, 2)
  ]
  x, y = r.normal(size=(30, 2)), r.integers(0, 3, 30)
  values = r.uniform(size=(2, 3))
  values[0, 1] = np.nan
  return [
    plots.curves(history, out / 'curves.png'),
    plots.templates(r.normal(size=(4, 16)), (4, 4), out / 'templates.png'),
    plots.decision_regions(r.normal(size=(3, 2)), r.normal(size=3), x, y, out / 'regions.png'),
    plots.sweep_heatmap([0.01, 0.1, 1.0], [0.0, 1e-3], values, out / 'heatmap.png'),
    plots.sweep_curves(r.uniform(0.1, 1, size=(3, 5)), ['a', 'b', 'c'], out / 'sweep_curves.png'),
  ]


def test_pictures_drawn_in_threads_equal_those_drawn_alone(tmp_path):
  alone = {}
  for seed in range(4):
    (tmp_path / f'alone{seed}').mkdir()
    alone[seed] = [p.read_bytes() for p in _draw_all(tmp_path / f'alone{seed}', seed)]
  for seed in range(4):
    (tmp_path / f'thread{seed}').mkdir()
  with futures.ThreadPoolExecutor(4) as pool:
    drawn = dict(
      zip(range(4), pool.map(lambda s: _draw_all(tmp_path / f'thread{s}', s), range(4)), strict=True)
    )
  for seed, paths in drawn.items():
    assert [p.read_bytes()[:8] for p in paths] == [b'\x89PNG\r\n\x1a\n'] * len(paths)
    assert [p.read_bytes() for p in paths] == alone[seed]


def test_drawing_touches_no_pyplot_state(tmp_path):
  code = (
    'import sys, pathlib, matplotlib\n'
    "matplotlib.use('svg')\n"  # the user's own choice, which drawing must leave alone
    'from tests.runs import plots_test\n'
    f'plots_test._draw_all(pathlib.Path({str(tmp_path)!r}), 0)\n'
    "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    "assert matplotlib.rcParams['backend'] == 'svg', 'the backend was switched'\n"
  )
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode == 0, out.stderr
  assert len(list(tmp_path.glob('*.png'))) == 5


def _history(loss, mse, n=40):
  return [
    {'epoch': e, 'train_loss': loss / e, 'val_loss': 2 * loss / e, 'train_mse': mse / e + mse, 'val_mse': mse}
    for e in range(1, n + 1)
  ]


def test_the_curves_margins_hold_every_label(tmp_path):
  """The curves' margins are set, not measured: with labels as long as the run's can be (`1e+05`,
  `140000`), nothing is drawn within two pixels of the picture's edge."""
  from matplotlib import image  # pylint: disable=import-outside-toplevel

  for loss, mse in ((1e5, 7e4), (0.25, 0.004), (3.0, 2.5e3)):
    path = tmp_path / f'curves_{loss}.png'
    plots.curves(_history(loss, mse), str(path), 'l2 on a large problem')
    pixels = image.imread(path)[..., :3]
    frame = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3)])
    frame = np.concatenate([frame, pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    assert np.all(frame > 0.99), (loss, mse)  # white: no label reaches the edge
