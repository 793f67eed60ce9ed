"""How a loaded dataset becomes the splits a data path reads: in memory, or left in its file.

`prepare` splits and standardizes a `data.Raw` in memory (`data.prepare`),
except a memory map to stream, whose rows stay in the file (`stream.prepare`
fits the standardization and copies nothing); `factory.make` then streams
such a dataset. `holds_raw_features` tells the two apart.
"""

import numpy as np

from linear_jax.data import datasets as data_lib
from linear_jax.datapath import standardize
from linear_jax.datapath import stream


def prepare(
  raw, name, val_fraction, test_fraction, preprocess, *, seed, dtype, stream_file, progress, class_weight
):
  """A `Dataset` of `raw`: its splits prepared in memory (`data.prepare`), or, for a memory map with
  `stream_file`, left in the file to stream (`stream.prepare`: nothing is copied)."""
  if stream_file and isinstance(raw.x, np.memmap):
    dataset = stream.prepare(
      raw, name, val_fraction, test_fraction, preprocess, dtype=dtype, class_weight=class_weight
    )
  else:
    dataset = data_lib.prepare(
      raw,
      name,
      val_fraction,
      test_fraction,
      preprocess,
      seed=seed,
      dtype=dtype,
      progress=progress,
      class_weight=class_weight,
    )
  for split, fraction, what in (('val', val_fraction, 'validation'), ('test', test_fraction, 'test')):
    rows = len(getattr(dataset, f'x_{split}'))
    if fraction > 0 and rows == 0 and progress and (split == 'val' or raw.test is None):
      n = len(raw.x)
      progress(  # the split the flag asked for is not there: said, not dropped in silence
        f'{name}: --{split}_fraction={fraction} of {n:,} rows rounds to no row, so there is no {what} '
        f'split; --{split}_fraction={1 / n:.3g} or more gives one row.'
      )
  constant = dataset.extra.get(data_lib.CONSTANT)
  if constant and progress:  # said once, whichever path prepared the splits
    listed = ', '.join(str(j) for j in constant[:10]) + (
      f' and {len(constant) - 10} more' if len(constant) > 10 else ''
    )
    progress(
      f'{name}: feature{"s" if len(constant) > 1 else ""} {listed} '
      f'{"are" if len(constant) > 1 else "is"} constant on the training rows (nothing to learn from); '
      'left unscaled.'
    )
  return dataset


def holds_raw_features(dataset):
  """Whether `dataset`'s splits hold the file's raw features (a `stream.prepare`d dataset)."""
  return bool(dataset.extra.get(standardize.AFFINE))
