"""A resumable search: each method runs in segments, with an atomic checkpoint between them.

Every search method of `search.py` is a scan over units (a generation, an
iteration of local search, an epoch of gradient descent, one random
candidate), written as `segment(carry, keys) -> (carry, curve)` over the
units' PRNG keys. `Segments.run` calls it on consecutive slices of
`every // cost` units (`cost`: loss evaluations per unit), and after each
slice writes the carry (the population and its losses, the best weights and
loss, the parameters and optimizer state), the curve so far and the number of
units done. Finished methods keep their row and curve. A resumed search
skips the finished methods, restores the carry of the one in flight and runs
the same slices as an uninterrupted run, so it ends bit for bit equal to it.
A stop signal (see `preemption.py`) is honoured at the next slice boundary:
the checkpoint is written and `preemption.Stopped` raised.
"""

import json
import os

import jax
import numpy as np

from linear_jax.training import checkpoint
from linear_jax.training import preemption

FILE = 'search_checkpoint.npz'
CHECKPOINT_EVERY = 2000  # loss evaluations between a search's checkpoints


def in_one(segment, carry, keys, cost):
  """Runs every unit as one segment: a search without checkpoints."""
  del cost
  return segment(carry, keys)


class Segments:
  """Runs the methods of a search in checkpointed segments (see the module docstring).

  Args:
    path: the checkpoint file.
    identity: JSON-able dict of everything that fixes the result; a resume
      with another one is refused, naming the keys that differ.
    every: loss evaluations between checkpoints.
    resume: continue from `path` if it exists.
  """

  def __init__(self, path, identity, every=CHECKPOINT_EVERY, resume=False):
    if every < 1:
      raise ValueError(f'checkpoint_every must be >= 1, got {every}.')
    self.path, self.every = path, every
    self.identity = json.loads(json.dumps(identity))
    self.done = {}  # label -> (row, curve_evals, curve_loss)
    self.current = None  # (label, units done, carry leaves, curve pieces)
    self.label = None
    if resume and os.path.exists(path):
      self._load()

  def _load(self):
    leaves, meta = checkpoint.read(self.path)
    if 'search' not in meta or len(meta.get('names', ())) != len(leaves):
      raise ValueError(f'{self.path}: not a search checkpoint.')
    saved = meta['search']['identity']
    changed = sorted(k for k in set(saved) | set(self.identity) if saved.get(k) != self.identity.get(k))
    if changed:
      raise ValueError(
        f'{self.path}: written by a search with other settings ({", ".join(changed)}); cannot resume. '
        'Run again with the settings it was written with, or without --resume to start over.'
      )
    arrays = dict(zip(meta['names'], leaves, strict=True))
    for i, (label, row) in enumerate(meta['search']['done']):
      self.done[label] = (row, arrays[f'done{i}/evals'], arrays[f'done{i}/loss'])
    cur = meta['search']['current']
    if cur is not None:
      carry = [arrays[n] for n in meta['names'] if n.startswith('cur/carry/')]
      curve = arrays['cur/curve']
      self.current = (cur['label'], cur['units'], carry, [curve] if curve.size else [])

  def _save(self, current):
    arrays, done = {}, []
    for i, (label, (row, evals, loss)) in enumerate(self.done.items()):
      done.append([label, row])
      arrays[f'done{i}/evals'], arrays[f'done{i}/loss'] = np.asarray(evals), np.asarray(loss)
    cur = None
    if current is not None:
      label, units, carry, pieces = current
      cur = {'label': label, 'units': units}
      for j, leaf in enumerate(jax.tree.leaves(carry)):
        arrays[f'cur/carry/{j:03d}'] = np.asarray(leaf)
      arrays['cur/curve'] = np.concatenate([np.asarray(p) for p in pieces] or [np.zeros((0,), np.float32)])
    names = sorted(arrays)
    meta = {'search': {'identity': self.identity, 'done': done, 'current': cur}, 'names': names}
    checkpoint.save(self.path, [arrays[n] for n in names], meta)

  def finished(self, label):
    """`(row, curve_evals, curve_loss)` of a method finished before the resume, or `None`."""
    return self.done.get(label)

  def run(self, segment, carry, keys, cost):
    """`segment` over `keys` in checkpointed slices; returns `(carry, curve)` as in one call."""
    units = len(keys)
    step = max(1, self.every // max(1, int(cost)))
    start, pieces = 0, []
    if self.current is not None and self.current[0] == self.label:
      _, start, leaves, pieces = self.current
      carry = jax.tree.unflatten(jax.tree.structure(carry), leaves)
      self.current = None
    for a in range(start, units, step):
      before = carry
      carry, piece = segment(carry, keys[a : a + step])
      if not preemption.wait((carry, piece)):  # a stop signal: abandon the slice in flight
        self._save((self.label, a, before, pieces))
        raise preemption.Stopped(self.path, f'{a} of {units} steps of {self.label}')
      pieces.append(np.asarray(piece))
      b = min(a + step, units)
      if b == units:
        break
      stop = preemption.stop_requested()
      self._save((self.label, b, carry, pieces))
      if stop:
        raise preemption.Stopped(self.path, f'{b} of {units} steps of {self.label}')
    curve = np.concatenate(pieces) if pieces else np.zeros((0,), np.float32)
    return carry, curve

  def finish(self, label, row, curve_evals, curve_loss):
    """Records a finished method, writes the checkpoint, and stops here if a signal came."""
    self.done[label] = (row, np.asarray(curve_evals), np.asarray(curve_loss))
    self._save(None)
    if preemption.stop_requested():
      raise preemption.Stopped(self.path, f'{label}')
