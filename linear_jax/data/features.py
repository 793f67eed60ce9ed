"""Feature maps on loaded data: the lecture's colour / intensity histograms of images."""

import dataclasses

import numpy as np

from linear_jax.data import memory
from linear_jax.data.records import Raw

REPRESENTATIONS = ('pixels', 'histogram')


def _histograms(x, image_shape, bins, lo, hi):
  channels = image_shape[0] if len(image_shape) == 3 else 1
  n = len(x)
  per_channel = x.reshape(n, channels, -1)
  idx = np.clip(((per_channel - lo) / max(hi - lo, 1e-12) * bins).astype(np.int64), 0, bins - 1)
  counts = np.zeros((n, channels, bins))
  rows = np.arange(n)[:, None, None]
  chans = np.arange(channels)[None, :, None]
  np.add.at(counts, (np.broadcast_to(rows, idx.shape), np.broadcast_to(chans, idx.shape), idx), 1.0)
  return (counts / per_channel.shape[2]).reshape(n, channels * bins)


def histogram_features(raw: Raw, bins: int = 16) -> Raw:
  """The lecture's "Features: Histogram": each image as the histogram of its pixel values.

  Grayscale images give `bins` features (the fraction of pixels in each
  intensity bin); colour images `[C, H, W]` give a histogram per channel,
  `C · bins` features. The value range is the format's (the data's min and max).
  """
  if raw.image_shape is None:
    raise ValueError('histogram features need image data (digits, mnist, cifar10 or an npz of images).')
  if not (isinstance(bins, int) and bins >= 1):
    raise ValueError(f'bins must be a whole number >= 1, got {bins!r}.')
  shape = tuple(raw.image_shape)
  if len(shape) == 3 and shape[-1] <= 4 < min(shape[:2]):  # [H, W, C] images, read as [C, H, W] wrongly
    raise ValueError(
      f'images of shape {list(shape)} look channels-last ([H, W, C]); histogram features read [C, H, W] '
      "(CIFAR-10's layout), and would count each image row as a channel: save them as "
      'x.transpose(0, 3, 1, 2).'
    )
  arrays = [raw.x] + ([raw.test[0]] if raw.test is not None else [])
  channels = shape[0] if len(shape) == 3 else 1
  # The counts (float64) and their normalized copy, for every image: refused before any is made.
  memory.check_memory(
    2 * 8 * sum(len(a) for a in arrays) * channels * bins,
    f'histogram features (bins={bins})',
    what=f'a histogram of {bins:,} bins per image{" and channel" if channels > 1 else ""}',
    advice='choose fewer --bins.',
  )
  lo, hi = min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)
  test = None if raw.test is None else (_histograms(raw.test[0], raw.image_shape, bins, lo, hi), raw.test[1])
  return dataclasses.replace(
    raw, x=_histograms(raw.x, raw.image_shape, bins, lo, hi), image_shape=None, test=test
  )
