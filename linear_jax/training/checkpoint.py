"""Crash-safe checkpoints: a pytree of arrays and a JSON header in one `.npz`.

Written to a temporary file in the same folder, fsynced, then renamed over the
old one, so a crash at any moment leaves either the old or the new checkpoint,
never a torn one. Read with `allow_pickle=False`.
"""

import json
import os
import time
import zipfile

import chex
import jax
import numpy as np

from linear_jax.training import files

# For the crash-safety tests only: with LINEAR_JAX_CHECKPOINT_PAUSE=N:MARKER set,
# the N-th save creates the file MARKER and waits (until MARKER is deleted, at
# most 600 s), its temporary file written and not yet renamed, so a test can
# kill or signal the process at the worst moment.
_PAUSE = os.environ.get('LINEAR_JAX_CHECKPOINT_PAUSE')
_saves = 0


def _crash_test_pause():
  global _saves  # noqa: PLW0603 - a counter the test hook needs
  _saves += 1
  if _PAUSE:
    count, marker = _PAUSE.split(':', 1)
    if _saves == int(count):
      with open(marker, 'w') as f:
        f.write('paused')
      deadline = time.time() + 600
      while os.path.exists(marker) and time.time() < deadline:
        time.sleep(0.01)


def remove_stale(folder: str) -> None:
  """Deletes the temporary files a save that a crash interrupted left (this project's, nothing else)."""
  files.remove_temporary(folder, '.npz')


def save(path: str, tree: chex.ArrayTree, meta: dict) -> None:
  """Atomically writes the arrays of `tree` and the JSON-able dict `meta` (`files.replace`).

  Raises `files.WriteError` (one line) if the folder cannot take it; the old checkpoint is then intact.
  """
  leaves = jax.tree.leaves(tree)
  arrays = {f'leaf_{i:04d}': np.asarray(a) for i, a in enumerate(leaves)}
  arrays['meta'] = np.asarray(json.dumps(meta))

  def write(f):
    np.savez(f, **arrays)
    f.flush()
    os.fsync(f.fileno())
    _crash_test_pause()

  files.replace(path, write, binary=True, suffix='.npz', sync=False)
  dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    os.fsync(dir_fd)
  finally:
    os.close(dir_fd)


def read(path: str) -> tuple[list[np.ndarray], dict]:
  """`(arrays, meta)`: every array of a checkpoint in the order written, and its header.

  Raises a `ValueError` naming the file if it is unreadable.
  """
  if os.path.isfile(path) and not zipfile.is_zipfile(path):  # np.load would call it pickled data
    raise ValueError(f'{path}: not a readable checkpoint (not an .npz archive).')
  try:
    with np.load(path, allow_pickle=False) as f:
      files = dict(f.items())
  except Exception as e:  # noqa: BLE001 - any failure to read means a bad file
    raise ValueError(f'{path}: not a readable checkpoint ({type(e).__name__}: {e}).') from e
  if 'meta' not in files:
    raise ValueError(f'{path}: not a linear_jax checkpoint (no header).')
  try:
    meta = json.loads(str(files.pop('meta')))
  except ValueError as e:
    raise ValueError(f'{path}: not a linear_jax checkpoint (unreadable header: {e}).') from e
  if not isinstance(meta, dict):  # a number or a list: every reader looks its fields up by name
    raise ValueError(f'{path}: not a linear_jax checkpoint (its header is not a record of fields).')
  return [files[f'leaf_{i:04d}'] for i in range(len(files)) if f'leaf_{i:04d}' in files], meta


def load(path: str, template: chex.ArrayTree, check_meta=None) -> tuple[chex.ArrayTree, dict]:
  """Reads a checkpoint into the structure of `template`; returns `(tree, meta)`.

  Raises a `ValueError` naming the file if it is unreadable or was written for
  another model (a different number, shape or dtype of arrays). `check_meta(meta)`, if given, runs
  first: a header written with other settings is refused by name, not by its arrays' count.
  """
  arrays, meta = read(path)
  if check_meta is not None:
    check_meta(meta)
  files = {f'leaf_{i:04d}': a for i, a in enumerate(arrays)}
  leaves, treedef = jax.tree.flatten(template)
  if len(files) != len(leaves):
    raise ValueError(f'{path}: holds {len(files)} arrays, this model needs {len(leaves)}.')
  restored = []
  for i, leaf in enumerate(leaves):
    got, want = files[f'leaf_{i:04d}'], np.asarray(leaf)
    if got.shape != want.shape or got.dtype != want.dtype:
      raise ValueError(
        f'{path}: array {i} is {got.dtype}{list(got.shape)} but this model needs '
        f'{want.dtype}{list(want.shape)} (a checkpoint of another model shape or dtype?).'
      )
    restored.append(got)
  return jax.tree.unflatten(treedef, restored), meta
