"""The fingerprint of a prepared dataset: what a checkpoint names as the data it was trained on.

A resume (`train --resume`, `lr_sweep --resume`, `search --resume`) on other
data would mix two runs in one history, so every checkpoint holds `of(dataset)`
and a resume compares it with the data it is given (`differences`). The
fingerprint covers each split's features, targets and sample weights (shape,
dtype and a CRC-32 of the bytes) and the preparation fitted on the training
rows (the shift and scale of `--preprocess`): another dataset of the same
shape, another `--val_fraction` / `--test_fraction` / `--seed` split, another
`--preprocess` or `--class_weight` each change it.

An array above `FULL_BYTES` (a streamed file) is fingerprinted by its shape,
dtype and a CRC of `SAMPLES` blocks of `SAMPLE_BYTES` spread evenly over it,
so a resume does not read the whole file once more; a file rewritten in place
with other values in the blocks not sampled would go unnoticed.
"""

import zlib

import numpy as np

from linear_jax.data import chunks

FULL_BYTES = 64 << 20
SAMPLES = 64
SAMPLE_BYTES = 1 << 20

SHOWN = 3  # differences named; the rest are counted

PARTS = {'x': 'features', 'y': 'targets', 'w': 'sample weights'}


def crc(a) -> int:
  """CRC-32 of the bytes of `a` (a sample of them above `FULL_BYTES`); 0 for an empty array."""
  chunks.check_mapped(a)  # a file truncated while mapped: one line, not SIGBUS
  a = np.asarray(a)
  if a.size == 0:
    return 0
  if a.nbytes <= FULL_BYTES:
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
  rows = a.shape[0]
  per = max(1, SAMPLE_BYTES // max(1, a[0].nbytes))
  value = 0
  for start in np.linspace(0, max(0, rows - per), SAMPLES).astype(np.int64):
    block = np.ascontiguousarray(a[start : start + per])
    value = zlib.crc32(block.view(np.uint8).reshape(-1), value)
  return value


def _entry(a):
  a = np.asarray(a)
  return [list(a.shape), str(a.dtype), crc(a)]


def of(dataset) -> dict:
  """JSON-ready: the dataset's name, each split's `x`, `y`, `w`, the preparation's `shift` / `scale`."""
  out = {'name': dataset.name}
  for part in ('shift', 'scale'):  # first: a changed preparation changes every split after it
    out[part] = _entry(np.asarray(getattr(dataset, part), np.float64))
  for split in ('train', 'val', 'test'):
    for part in PARTS:
      a = getattr(dataset, f'{part}_{split}', None)
      if a is not None:
        out[f'{part}_{split}'] = _entry(a)
  return out


def _why(key, old, new):
  """What differs in one entry, in words."""
  if key == 'name':
    return f'the dataset ({old!r}, now {new!r})'
  if key in ('shift', 'scale'):
    return f'the preprocessing ({key})'
  part, split = key.split('_', 1)
  what = f"the {split} split's {PARTS[part]}"
  if old is None or new is None:
    return f'{what} ({"none" if old is None else "some"}, now {"none" if new is None else "some"})'
  if old[0] != new[0]:
    return f'{what} (shape {old[0]}, now {new[0]})'
  if old[1] != new[1]:
    return f'{what} ({old[1]}, now {new[1]})'
  return f'{what} (other values)'


def differences(saved: dict | None, now: dict) -> list[str]:
  """What differs between the fingerprint a checkpoint holds and `now`, in words; `[]` when the same."""
  if saved is None:
    return ['the data (the checkpoint names none: written by an older version)']
  keys = (
    [k for k in now if k in saved] + [k for k in now if k not in saved] + [k for k in saved if k not in now]
  )
  out = [_why(k, saved.get(k), now.get(k)) for k in keys if saved.get(k) != now.get(k)]
  return out if len(out) <= SHOWN else [*out[:SHOWN], f'{len(out) - SHOWN} more']


def refusal(file: str, saved: dict | None, now: dict) -> str | None:
  """The one-line refusal of a resume from `file` on other data, or `None` when the data is the same."""
  changed = differences(saved, now)
  if not changed:
    return None
  return (
    f"{file}: trained on other data than this run's ({'; '.join(changed)}); cannot resume. "
    'Run again with the data and preparation flags it was written with, or without --resume to start over.'
  )
