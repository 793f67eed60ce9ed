"""What a fit carries from epoch to epoch, and its checkpoints: `State`, `Checkpoints`.

A `State` holds everything a checkpoint holds (parameters, optimizer state,
the per-epoch history, the best epoch so far); the fit loop replaces it in one
assignment per epoch, so a Ctrl-C between two statements never saves a
half-updated state. `Checkpoints` writes it crash-safely (`checkpoint.save`)
and restores it with `--resume`, refusing a checkpoint written with other
settings, on other data (`fingerprint`) or by another number of processes; with several processes, process
0 writes and every process reads (the data path says who is who).
"""

import dataclasses
import os
import time
from typing import NamedTuple

import jax
import numpy as np

from linear_jax.maths import loss_files
from linear_jax.maths import validation
from linear_jax.training import checkpoint
from linear_jax.training import fingerprint

CHECKPOINT = 'checkpoint.npz'
# `checkpoint_every=0`: a checkpoint at most this often (and when the run stops): writing one each epoch
# cost more than a 1 ms epoch of digits.
SAVE_SECONDS = 10.0


class State(NamedTuple):
  """The fit's state after an epoch; `best` is `{'params', 'score', 'epoch', 'bad'}`."""

  params: object
  opt_state: object
  history: tuple
  best: dict


def start(params, opt_state):
  """The `State` before the first epoch."""
  return State(params, opt_state, (), {'params': params, 'score': -np.inf, 'epoch': 0, 'bad': 0})


def checked_workdir(workdir, checkpoint_every, writer=True):
  """`workdir` with its `~` expanded, made if missing by the process that writes (`writer`); a `ValueError`
  for an empty name, a file, or a `checkpoint_every` that is not a whole number >= 0 (they failed in the
  OS's words, or wrote nothing)."""
  validation.check_whole('checkpoint_every', checkpoint_every, 0)  # 0: by time
  if workdir is None:
    return None
  if not str(workdir).strip():
    raise ValueError('workdir is empty: name the folder of the checkpoints, or give None for none.')
  workdir = os.path.expanduser(os.fspath(workdir))
  if os.path.lexists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f'workdir={workdir} is not a folder.')
  if writer:  # the other processes of a run write nothing
    os.makedirs(workdir, exist_ok=True)
  return workdir


class Checkpoints:
  """The checkpoint of one fit in `workdir` (none when `workdir` is `None`; see `checked_workdir`) on
  `dataset`."""

  def __init__(self, cfg, path, workdir, dataset=None):
    self.cfg, self.path, self.workdir = cfg, path, workdir
    # Process 0's rows name the data (each process of a multi-host run holds its own).
    self.data = fingerprint.of(dataset) if dataset is not None and path.writer and workdir else None
    self.file = os.path.join(workdir, CHECKPOINT) if workdir else None
    self.key = jax.random.PRNGKey(cfg.seed)  # epoch e shuffles with fold_in(key, e)
    self._saved_at = time.monotonic()
    self.step = None  # how `--learning_rate=auto` was resolved (`train.resolve_step_size`, `remeasure_step`)

  def saved_step(self):
    """The resolved `--learning_rate=auto` of the checkpoint there is (`None` if none, or none recorded):
    a resumed run takes it rather than measuring again, which another machine might do in other bits."""
    if not self.file or not os.path.exists(self.file):
      return None
    return checkpoint.read(self.file)[1].get('learning_rate_found')

  def due(self, epoch, every):
    """Whether the state after `epoch` (from 0) is written: every `every` epochs; with `every=0`, once
    `SAVE_SECONDS` have passed since the last write (every epoch with several processes, which must
    agree without asking each other)."""
    if every > 0:
      return (epoch + 1) % every == 0
    if self.path.record()['num_processes'] > 1:
      return True
    return time.monotonic() - self._saved_at >= SAVE_SECONDS

  def restore(self, state, resume):
    """`state`, or with `resume` the checkpointed one if there is one (`self.key` then comes from it)."""
    found = bool(resume and self.file and os.path.exists(self.file))
    self.path.check_same_view(self.file, found)
    with self.path.together(f'the checkpoint in {self.workdir}'):  # one process's error stops all
      if self.workdir and self.path.writer:
        checkpoint.remove_stale(self.workdir)
      if found:
        template = (state.params, state.opt_state, state.params, self.key)
        (params, opt_state, best_params, self.key), meta = checkpoint.load(self.file, template, self._check)
    if not found:
      return state
    best = {
      'params': best_params,
      'score': meta['best_score'],
      'epoch': meta['best_epoch'],
      'bad': meta['bad'],
    }
    return State(params, opt_state, tuple(meta['history']), best)

  def _check(self, meta):
    """Raises a `ValueError` if the checkpoint's header `meta` is of another process count, other
    settings or other data than this run's."""
    self.path.check_written_by(self.file, meta)
    saved, ours = meta.get('config', {}), dataclasses.asdict(self.cfg)
    changed = sorted(k for k, v in ours.items() if saved.get(k) != v)
    if changed == ['epochs'] and saved.keys() == ours.keys():  # more epochs go on; fewer, a cosine's, not
      self._check_extension(saved['epochs'], len(meta.get('history') or ()))
    elif changed or saved.keys() != ours.keys():
      raise ValueError(
        f'{self.file}: written with other settings ({", ".join(changed) or "its fields"}); cannot resume. '
        'Run again with the settings it was written with, or without --resume to start over.'
      )
    if meta.get('loss_file_sha256') != loss_files.contents_digest(self.cfg.loss):
      raise ValueError(
        f'{self.file}: written with another version of the loss file of --loss={self.cfg.loss} (its '
        'contents changed); cannot resume. Restore the file, or run without --resume to start over.'
      )
    other = self.data is not None and fingerprint.refusal(self.file, meta.get('data'), self.data)
    if other:
      raise ValueError(other)

  def _check_extension(self, written, reached):
    """Raises a `ValueError` unless a run written for `written` epochs can go on to `cfg.epochs`: more
    of them, under a schedule that does not spread over the epoch count (the cosine's does, so its
    first epochs would have taken other steps), and, for a run that `reached` its last epoch, that epoch
    on the `eval_every` cadence (one evaluated only for being the last is in the history a longer run
    would not have)."""
    epochs = self.cfg.epochs
    if not (isinstance(written, int) and 0 < written < epochs):
      raise ValueError(
        f'{self.file}: written for --epochs={written}; a resume may raise --epochs to train on, not '
        f'lower it (--epochs={epochs}). Run with --epochs={written} or more, or without --resume.'
      )
    every = self.cfg.eval_every
    if every > 1 and written % every and reached >= written:  # evaluated for being the last
      raise ValueError(
        f'{self.file}: written for --epochs={written}, whose last epoch was evaluated for being the last '
        f'(--eval_every={every}); a run of {epochs} would not have evaluated it, and the evaluation counts '
        f'for --patience and the best epoch; cannot resume. Run with --epochs={written}, or without --resume.'
      )
    if self.cfg.schedule == 'cosine':
      raise ValueError(
        f'{self.file}: written for --epochs={written} under --schedule=cosine, whose decay spans the '
        f'epochs: a run of {epochs} would have taken other steps from the start; cannot resume. '
        f'Run with --epochs={written}, or without --resume to start over.'
      )

  def save(self, state):
    """Writes `state` (every process first reaches the same epoch; process 0 writes)."""
    if not self.file:
      return
    self.path.barrier(f'checkpoint after epoch {len(state.history)}')
    if not self.path.writer:
      return
    best, record = state.best, self.path.record()
    meta = {
      'num_processes': record['num_processes'],
      'epoch': len(state.history),
      'history': list(state.history),
      'config': dataclasses.asdict(self.cfg),
      'loss_file_sha256': loss_files.contents_digest(self.cfg.loss),  # the same --loss text, edited: refused
      'best_score': best['score'],
      'best_epoch': best['epoch'],
      'bad': best['bad'],
      'data': self.data,  # what it was trained on: a resume on other data is refused
      'learning_rate_found': self.step,  # the step 'auto' resolved to
      'data_order': record['data_order'],  # with the key and the epoch, it fixes the rows' order
    }
    checkpoint.save(self.file, (state.params, state.opt_state, best['params'], self.key), meta)
    self._saved_at = time.monotonic()
