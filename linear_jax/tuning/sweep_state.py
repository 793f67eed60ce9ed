"""A sweep's checkpoint: its finished chunks, the chunk in flight, and what must match to resume.

A sweep trains its models chunk by chunk (one seed's models, at most
`chunk_size` at a time). The checkpoint holds every finished chunk's results
(final parameters, per-epoch metrics, best metrics and epochs, divergence
steps) and the state of the chunk in flight after its last whole epoch
(parameters, optimizer states, divergence marks, explosion limits, metrics so
far). The PRNG keys need no saving: epoch `e` of a chunk shuffles with
`fold_in(PRNGKey(seed), e)`, so the seed and the epoch fix them. Everything
that decides the result (the `TrainConfig`, the settings, the chunk size,
the data, the number of processes) is in the header, and a resume with any of
it changed is refused, naming what changed.

On disk (`checkpoint.py`: one `.npz`, written atomically) the arrays are
named `done{i}/...` and `cur/...`; their names are in the header.
"""

import dataclasses
import json

import jax
import numpy as np

from linear_jax.maths import loss_files
from linear_jax.training import checkpoint
from linear_jax.training import fingerprint

FILE = 'sweep_checkpoint.npz'


@dataclasses.dataclass
class ChunkProgress:
  """The chunk in flight after `epoch` whole epochs (leading axis: its models)."""

  params: object
  opt_state: object
  diverged_at: np.ndarray  # [k]
  limit: np.ndarray  # [k] loss above which a model counts as exploded
  history: list  # per epoch: dict metric -> [k]
  best: dict  # metric -> [k], and 'score'
  best_epoch: np.ndarray  # [k]
  epoch: int


def identity(cfg, dataset, settings, chunk):
  """What fixes a sweep's result, JSON-ready: a resume must match it exactly."""
  data = fingerprint.of(dataset)  # the same fingerprint a training checkpoint holds
  return json.loads(
    json.dumps(
      {
        'config': dataclasses.asdict(cfg),
        'loss_file_sha256': loss_files.contents_digest(cfg.loss),
        'settings': settings,
        'chunk_size': chunk,
        'data': data,
        'num_processes': jax.process_count(),
      }
    )
  )


def differences(saved, now):
  """The names of what differs between two `identity` dicts."""
  out = [k for k in now['config'] if saved.get('config', {}).get(k) != now['config'][k]]
  old, new = saved.get('settings', []), now['settings']
  if old != new:
    names = sorted({n for s in old + new for n in s})
    axis = [f'{n} values' for n in names if [s.get(n) for s in old] != [s.get(n) for s in new]]
    out += axis or ['settings']
  for key in ('chunk_size', 'num_processes'):
    if saved.get(key) != now[key]:
      out.append(key)
  if saved.get('loss_file_sha256') != now['loss_file_sha256']:
    out.append("the loss file's contents")
  if saved.get('data') != now['data']:
    out += fingerprint.differences(saved.get('data'), now['data'])
  return out


def _host(tree):
  return jax.tree.map(np.asarray, tree)


def _put_part(arrays, prefix, params, history, best, best_epoch, diverged_at, final=None):
  for j, leaf in enumerate(jax.tree.leaves(_host(params))):
    arrays[f'{prefix}/params/{j:03d}'] = leaf
  if history:
    for m in history[0]:
      arrays[f'{prefix}/history/{m}'] = np.stack([h[m] for h in history])
  for m, v in best.items():
    arrays[f'{prefix}/best/{m}'] = np.asarray(v)
  for m, v in (final or {}).items():
    arrays[f'{prefix}/final/{m}'] = np.asarray(v)
  arrays[f'{prefix}/best_epoch'] = np.asarray(best_epoch)
  arrays[f'{prefix}/diverged_at'] = np.asarray(diverged_at)


def save(path, ident, parts, progress):
  """Writes the finished `parts` (see `sweep._take_models`) and the `ChunkProgress` (or `None`)."""
  arrays = {}
  for i, (params, history, final, best, best_epoch, diverged_at) in enumerate(parts):
    _put_part(arrays, f'done{i}', params, history, best, best_epoch, diverged_at, final)
  if progress is not None:
    p = progress
    _put_part(arrays, 'cur', p.params, p.history, p.best, p.best_epoch, p.diverged_at)
    for j, leaf in enumerate(jax.tree.leaves(_host(p.opt_state))):
      arrays[f'cur/opt/{j:03d}'] = leaf
    arrays['cur/limit'] = np.asarray(p.limit)
  names = sorted(arrays)  # the order jax.tree.leaves gives a dict
  meta = {
    'identity': ident,
    'done': len(parts),
    'epoch': None if progress is None else progress.epoch,
    'names': names,
  }
  checkpoint.save(path, [arrays[n] for n in names], meta)


def _get_part(arrays, prefix, params_def):
  params = jax.tree.unflatten(
    params_def, [arrays[n] for n in sorted(arrays) if n.startswith(f'{prefix}/params/')]
  )

  def group(kind):
    return {n.split('/', 2)[2]: arrays[n] for n in sorted(arrays) if n.startswith(f'{prefix}/{kind}/')}

  stacked = group('history')
  epochs = len(next(iter(stacked.values()))) if stacked else 0
  history = [{m: v[e] for m, v in stacked.items()} for e in range(epochs)]
  return (
    params,
    history,
    group('final'),
    group('best'),
    arrays[f'{prefix}/best_epoch'],
    arrays[f'{prefix}/diverged_at'],
  )


def load(path, ident, params_def, opt_def):
  """`(parts, progress)` from the checkpoint at `path`, or a `ValueError` naming the file and what differs."""
  leaves, meta = checkpoint.read(path)
  if 'identity' not in meta or len(meta.get('names', ())) != len(leaves):
    raise ValueError(f'{path}: not a sweep checkpoint.')
  changed = differences(meta['identity'], ident)
  if changed:
    raise ValueError(
      f'{path}: written by a sweep with other settings ({", ".join(changed)}); cannot resume. '
      'Run again with the settings it was written with, or without --resume to start over.'
    )
  arrays = dict(zip(meta['names'], leaves, strict=True))
  try:
    parts = []
    for i in range(meta['done']):
      params, history, final, best, best_epoch, diverged_at = _get_part(arrays, f'done{i}', params_def)
      parts.append((params, history, final, best, best_epoch, diverged_at))
    progress = None
    if meta['epoch'] is not None:
      params, history, _, best, best_epoch, diverged_at = _get_part(arrays, 'cur', params_def)
      opt = jax.tree.unflatten(opt_def, [arrays[n] for n in sorted(arrays) if n.startswith('cur/opt/')])
      progress = ChunkProgress(
        params, opt, diverged_at, arrays['cur/limit'], history, best, best_epoch, meta['epoch']
      )
  except (KeyError, ValueError, StopIteration) as e:
    raise ValueError(f'{path}: a damaged sweep checkpoint ({type(e).__name__}: {e}).') from e
  return parts, progress
