"""Data: datasets by name, the readers of untrusted files, records, synthetic data, feature maps.

`datasets` loads any source by name (`load`) and splits and preprocesses it
(`prepare`); `readers` are the only parsers of untrusted bytes; `records`
holds the `Raw` and `Dataset` records, and `build` turns arrays into checked
ones (`from_arrays`);
`generators` makes synthetic data with known structure; `features` maps
loaded data (histograms); `npyfile` memory-maps `.npy` files; `chunks` passes
over large matrices in row blocks; `memory` tells the host's free memory and
refuses what does not fit.
"""

from linear_jax.data.build import from_arrays
from linear_jax.data.datasets import DATASETS
from linear_jax.data.datasets import PREPROCESSING
from linear_jax.data.datasets import load
from linear_jax.data.datasets import params_to_raw
from linear_jax.data.datasets import prepare
from linear_jax.data.features import histogram_features
from linear_jax.data.generators import binary2d
from linear_jax.data.generators import blobs
from linear_jax.data.generators import linreg
from linear_jax.data.records import Dataset
from linear_jax.data.records import Raw

__all__ = [
  'DATASETS',
  'PREPROCESSING',
  'Dataset',
  'Raw',
  'binary2d',
  'blobs',
  'from_arrays',
  'histogram_features',
  'linreg',
  'load',
  'params_to_raw',
  'prepare',
]
