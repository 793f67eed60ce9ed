"""Every picture: curves, class templates, decision regions. Writes PNG files.

Built on matplotlib's object API (`matplotlib.figure.Figure`), never pyplot:
no global figure state and no backend switch, so a notebook's own matplotlib
settings are left alone. Each picture is drawn under one lock, since
matplotlib's text layout (its mathtext parser, its font caches) is shared by
all figures and is not thread-safe; so any thread may draw.
"""

import functools
import os
import threading

import matplotlib
from matplotlib import ticker
from matplotlib.figure import Figure
import numpy as np

from linear_jax.training import files

_LOCK = threading.Lock()


def _one_at_a_time(draw):
  """Runs a drawing function under the module's lock (see the module docstring)."""

  @functools.wraps(draw)
  def locked(*args, **kwargs):
    with _LOCK:
      return draw(*args, **kwargs)

  return locked


def _save(fig, path, tight=True):
  if tight:  # labels and titles kept inside the figure: costs a drawing pass
    fig.tight_layout()
  # A Figure renders with Agg for .png; nothing global to close. Written as every output is (files.replace).
  fmt = os.path.splitext(path)[1].lstrip('.') or 'png'
  return files.replace(path, lambda f: fig.savefig(f, dpi=110, format=fmt), binary=True, sync=False)


def _log(ax, which):
  """Puts `ax`'s `which` axis ('x' or 'y') on a log scale labelled in plain text (`1e-02`).

  matplotlib's default log labels (`$10^{-2}$`) go through its mathtext parser,
  which costs more than the rest of a picture.
  """
  getattr(ax, f'set_{which}scale')('log')
  axis = getattr(ax, f'{which}axis')
  axis.set_major_formatter(ticker.LogFormatter())
  axis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def _log_y(ax):
  """A log y axis when the lines drawn on `ax` have a positive finite value, else a linear one.

  (A sweep whose every model diverged, or a loss of exactly 0, has nothing a
  log axis could show.)
  """
  values = np.concatenate(
    [np.asarray(line.get_ydata(), np.float64).ravel() for line in ax.get_lines()] or [[]]
  )
  if np.any(np.isfinite(values) & (values > 0)):
    _log(ax, 'y')


@_one_at_a_time
def curves(history, path, title=''):
  """Loss and accuracy (or MSE) per epoch, training and validation."""
  epochs = [m['epoch'] for m in history]
  second = 'accuracy' if 'train_accuracy' in history[0] else 'mse'
  fig = Figure(figsize=(9, 3.4))
  # Margins set here, not measured by `tight_layout` (a drawing pass: half this picture's time); they
  # hold tick labels of six characters, as `2e+07`, `0.975` or `280000` (tests/runs/plots_test.py).
  axes = fig.subplots(1, 2, gridspec_kw=dict(left=0.1, right=0.985, bottom=0.15, top=0.86, wspace=0.3))
  for ax, metric in zip(axes, ('loss', second), strict=True):
    for split in ('train', 'val'):
      key = f'{split}_{metric}'
      if key in history[0]:
        ax.plot(epochs, [m[key] for m in history], label=split)
    ax.set_xlabel('epoch')
    ax.set_ylabel(metric)
    if metric == 'loss':
      _log_y(ax)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend()
  fig.suptitle(title)
  return _save(fig, path, tight=False)


def _as_image(row, image_shape):
  img = row.reshape(image_shape)
  if img.ndim == 3:  # CIFAR's [C, H, W] -> [H, W, C], scaled to [0, 1] for display
    img = np.transpose(img, (1, 2, 0))
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo + 1e-12)
  return img


@_one_at_a_time
def templates(W, image_shape, path, class_names=None, title='Class templates (rows of W)'):
  """The visual viewpoint: each row of `W` drawn as an image of the input's shape.

  The rows are tiled into one image, five to a line, each under its class's
  name: one axes and one image, where an axes per class would cost most of
  the picture's time.
  """
  c = W.shape[0]
  cols = min(c, 5)
  rows = int(np.ceil(c / cols))
  tiles = [_as_image(W[i], image_shape) for i in range(c)]
  h, w = tiles[0].shape[:2]
  gap = max(1, int(np.ceil(0.2 * h)))  # room for a name between two lines of tiles
  corners = [((i // cols) * (h + gap) + gap, (i % cols) * (w + gap)) for i in range(c)]  # top, left
  mosaic = np.full(((h + gap) * rows, (w + gap) * cols - gap, *tiles[0].shape[2:]), np.nan)
  for (top, left), tile in zip(corners, tiles, strict=True):
    mosaic[top : top + h, left : left + w] = tile
  fig = Figure(figsize=(1.9 * cols, 2.0 * rows + 0.4))
  ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - 0.45 / fig.get_figheight()))
  ax.axis('off')
  if mosaic.ndim == 2:
    lim = np.abs(W).max()
    ax.imshow(mosaic, cmap=matplotlib.colormaps['RdBu_r'].with_extremes(bad='white'), vmin=-lim, vmax=lim)
  else:
    ax.imshow(np.where(np.isnan(mosaic), 1.0, mosaic))  # colour tiles are in [0, 1]; white between
  for i, (top, left) in enumerate(corners):
    name = class_names[i] if class_names else str(i)
    ax.text(left + (w - 1) / 2, top - 0.5 - 0.1 * gap, name, ha='center', va='bottom', fontsize=9)
  fig.suptitle(title)
  return _save(fig, path, tight=False)  # the axes' place is set above


@_one_at_a_time
def decision_regions(W, b, x, y, path, title='Decision regions and hyperplanes'):
  """The geometric viewpoint for 2-D inputs: regions, the hyperplanes `w·x + b = 0`, data."""
  pad = 0.5
  (x0, y0), (x1, y1) = x.min(0) - pad, x.max(0) + pad
  gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
  grid = np.stack([gx.ravel(), gy.ravel()], 1)
  s = grid @ W.T + b
  pred = (s[:, 0] >= 0).astype(int) if W.shape[0] == 1 else s.argmax(1)
  fig = Figure(figsize=(5, 4.4))
  ax = fig.subplots()
  ax.contourf(
    gx,
    gy,
    pred.reshape(gx.shape),
    alpha=0.25,
    cmap='tab10',
    vmin=0,
    vmax=9,
    levels=np.arange(-0.5, max(pred.max(), 1) + 1.5),
  )
  for c in range(W.shape[0]):  # each class's hyperplane w_c·x + b_c = 0
    ax.contour(
      gx,
      gy,
      s[:, c].reshape(gx.shape),
      levels=[0.0],
      colors=[matplotlib.colormaps['tab10'](c)],
      linewidths=1.2,
      linestyles='--',
    )
  ax.scatter(x[:, 0], x[:, 1], c=y, cmap='tab10', vmin=0, vmax=9, s=12, edgecolors='k', linewidths=0.3)
  ax.set_xlim(x0, x1)
  ax.set_ylim(y0, y1)
  ax.set_title(title)
  return _save(fig, path)


def _fmt(v):
  return '0' if v == 0 else f'{v:.0e}'.replace('e-0', 'e-').replace('e+0', 'e')


@_one_at_a_time
def sweep_heatmap(lrs, regs, values, path, label='validation accuracy'):
  """The course's heatmap: `values [len(regs), len(lrs)]` over log lr × log reg; NaN = diverged."""
  fig = Figure(figsize=(max(5, 0.45 * len(lrs) + 2), max(3, 0.45 * len(regs) + 1.5)))
  ax = fig.subplots()
  masked = np.ma.masked_invalid(values)
  im = ax.imshow(masked, aspect='auto', origin='lower', cmap='viridis')
  ax.set_xticks(range(len(lrs)), [_fmt(v) for v in lrs], rotation=60, fontsize=8)
  ax.set_yticks(range(len(regs)), [_fmt(v) for v in regs], fontsize=8)
  for i, j in zip(*np.nonzero(np.isnan(values)), strict=True):
    ax.text(j, i, '×', ha='center', va='center', color='red', fontsize=9)
  ax.set_xlabel('learning rate (log scale)')
  ax.set_ylabel('reg')
  fig.colorbar(im, ax=ax, label=label)
  ax.set_title(f'{label}; × = diverged')
  return _save(fig, path)


@_one_at_a_time
def loss_vs_lr(lrs, regs, final_loss, path):
  """Final training loss against learning rate, one line per reg: too small crawls, too large diverges."""
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  for i, reg in enumerate(regs):
    ax.plot(lrs, final_loss[i], marker='o', ms=3, label=f'reg={_fmt(reg)}')
  _log(ax, 'x')
  _log_y(ax)
  ax.set_xlabel('learning rate')
  ax.set_ylabel('final training loss')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title('Final loss against learning rate (gaps: diverged)')
  return _save(fig, path)


@_one_at_a_time
def sweep_curves(curves, labels, path, title='Training loss of every model'):
  """`curves [K, epochs]` on one plot, coloured by learning rate."""
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  colors = matplotlib.colormaps['plasma'](np.linspace(0, 0.9, len(curves)))
  epochs = np.arange(1, curves.shape[1] + 1)
  for c, lab, col in zip(curves, labels, colors, strict=True):
    ax.plot(epochs, c, color=col, lw=1, alpha=0.8, label=lab)
  _log_y(ax)
  ax.set_xlabel('epoch')
  ax.set_ylabel('training loss')
  if len(curves) <= 16:
    ax.legend(fontsize=6, ncol=2)
  ax.grid(alpha=0.3)
  ax.set_title(title)
  return _save(fig, path)


@_one_at_a_time
def search_curves(problems, path):
  """Best training loss against loss evaluations, one panel per problem, one line per method."""
  fig = Figure(figsize=(5.2 * len(problems), 3.8))
  axes = fig.subplots(1, len(problems), squeeze=False)
  for ax, (title, curves) in zip(axes[0], problems.items(), strict=True):
    for label, (evals, loss) in curves.items():
      ax.plot(np.maximum(evals, 1), loss, label=label, lw=1.3)
    _log(ax, 'x')
    _log(ax, 'y')
    ax.set_xlabel('loss evaluations (a gradient counts 2)')
    ax.set_ylabel('best training loss so far')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  return _save(fig, path)


@_one_at_a_time
def landscapes(panels, path):
  """Loss contours over two weights with descent paths: `{title: (w1, w2, Z, {label: path})}`."""
  fig = Figure(figsize=(5.4 * len(panels), 4.6))
  axes = fig.subplots(1, len(panels), squeeze=False)
  colors = ['tab:blue', 'tab:green', 'tab:red', 'tab:purple', 'tab:orange']
  for ax, (title, (w1, w2, z, paths)) in zip(axes[0], panels.items(), strict=True):
    levels = np.quantile(z, np.linspace(0.0, 0.95, 14))
    cs = ax.contour(w1, w2, z, levels=np.unique(levels), cmap='Greys', linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt='%.2f')
    for (label, p), col in zip(paths.items(), colors, strict=False):
      ax.plot(p[:, 0], p[:, 1], '-', color=col, lw=1.1, alpha=0.9, label=label)
      ax.plot(p[-1, 0], p[-1, 1], 'o', color=col, ms=4)
    ax.plot(paths[next(iter(paths))][0, 0], paths[next(iter(paths))][0, 1], 'k*', ms=9, label='start')
    ax.set_xlim(w1[0], w1[-1])
    ax.set_ylim(w2[0], w2[-1])
    ax.set_xlabel('w₁')
    ax.set_ylabel('w₂')
    ax.set_title(title)
    ax.legend(fontsize=7, loc='lower right')
  return _save(fig, path)


@_one_at_a_time
def svm_vs_softmax(score_range, svm, softmax, path, margin_met_at=None):
  """How each loss changes as the correct class's score moves, the other scores fixed."""
  fig = Figure(figsize=(5.6, 3.8))
  ax = fig.subplots()
  ax.plot(score_range, svm, label='multiclass SVM (hinge)', lw=2)
  ax.plot(score_range, softmax, label='softmax cross-entropy', lw=2)
  if margin_met_at is not None:
    ax.axvline(margin_met_at, color='grey', ls='--', lw=1)
    ax.text(margin_met_at, ax.get_ylim()[1] * 0.9, ' every margin met:\n SVM loss is 0 from here', fontsize=8)
  ax.set_xlabel('score of the correct class (other scores fixed)')
  ax.set_ylabel('loss')
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title('SVM: 0 once margins are met; softmax always wants more', fontsize=10)
  return _save(fig, path)


@_one_at_a_time
def hard_case(x, y, grid_scores, extent, path, title):
  """A 2-D hard case: the data and the decision boundary `score = 0` of a trained model."""
  fig = Figure(figsize=(4.2, 4.0))
  ax = fig.subplots()
  (x0, x1, y0, y1) = extent
  gx, gy = np.meshgrid(np.linspace(x0, x1, grid_scores.shape[1]), np.linspace(y0, y1, grid_scores.shape[0]))
  ax.contourf(
    gx, gy, grid_scores >= 0, levels=[-0.5, 0.5, 1.5], colors=['tab:blue', 'tab:orange'], alpha=0.18
  )
  ax.contour(gx, gy, grid_scores, levels=[0.0], colors='k', linewidths=1.2)
  ax.scatter(x[:, 0], x[:, 1], c=y, cmap='coolwarm', s=6, alpha=0.7)
  ax.set_xlim(x0, x1)
  ax.set_ylim(y0, y1)
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


@_one_at_a_time
def regularization_path(regs, metric, weight_norm, path, label='validation accuracy'):
  """Validation metric and ‖W‖ against the regularization strength (log x axis; reg 0 drawn at the left)."""
  regs = np.asarray(regs, np.float64)
  positive = regs[regs > 0]
  floor = positive.min() / 10 if len(positive) else 1e-6
  xs = np.where(regs > 0, regs, floor)
  order = np.argsort(xs)
  fig = Figure(figsize=(5.5, 3.6))
  ax = fig.subplots()
  ax.plot(xs[order], np.asarray(metric)[order], 'o-', color='C0')
  _log(ax, 'x')
  ax.set_xlabel('reg' + (f' (0 drawn at {floor:.1g})' if (regs == 0).any() else ''))
  ax.set_ylabel(label, color='C0')
  ax.grid(alpha=0.3)
  twin = ax.twinx()
  twin.plot(xs[order], np.asarray(weight_norm)[order], 's--', color='C1')
  twin.set_ylabel('‖W‖', color='C1')
  _log(twin, 'y')
  ax.set_title('Regularization path (L-BFGS)')
  return _save(fig, path)


@_one_at_a_time
def optimality_gap(runs, path, title='f − f* (log scale)'):
  """`f − f*` against epochs and against seconds, one line per run.

  Args:
    runs: `{label: (epochs [T], seconds [T], gap [T])}`; gaps ≤ 0 (at the
      reference's precision) are drawn at the smallest positive gap.
    path: the PNG to write.
  """
  gaps = [g for _, _, g in runs.values()]
  positive = np.concatenate([np.asarray(g)[np.asarray(g) > 0] for g in gaps] + [np.array([1e-16])])
  floor = positive[positive > 1e-16].min() if (positive > 1e-16).any() else 1e-16
  fig = Figure(figsize=(10, 3.8))
  axes = fig.subplots(1, 2)
  for i, (label, (epochs, seconds, raw_gap)) in enumerate(runs.items()):
    gap = np.maximum(np.asarray(raw_gap, np.float64), floor)
    style = '-' if i < 10 else '--'
    axes[0].plot(epochs, gap, style, label=label)
    axes[1].plot(seconds, gap, style, label=label)
  for ax, xlabel in zip(axes, ('epochs (passes over the data)', 'seconds'), strict=True):
    _log(ax, 'y')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('f − f*')
    ax.grid(alpha=0.3)
  _log(axes[1], 'x')
  axes[0].legend(fontsize=7, ncol=2)
  fig.suptitle(title)
  return _save(fig, path)
