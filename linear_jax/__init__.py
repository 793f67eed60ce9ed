"""linear_jax: linear classifiers and regressors learned by gradient descent."""

from linear_jax import _stack

# The imports of the library's maths, JAX's among them, in one block of the frame stack (see `_stack`).
_stack.in_one_block(__import__, 'linear_jax.maths.more_losses')

from linear_jax.maths import more_losses  # noqa: F401 - registers squared_hinge, huber, crammer_singer
from linear_jax.maths.custom_vjp import custom_vjp_objective
from linear_jax.maths.grad_sources import GRAD_SOURCES
from linear_jax.maths.grad_sources import value_and_grad
from linear_jax.maths.gradcheck import GradCheckReport
from linear_jax.maths.gradcheck import check_function_gradients
from linear_jax.maths.gradcheck import check_gradients
from linear_jax.maths.gradcheck import numerical_grad
from linear_jax.maths.gradcheck import relative_error
from linear_jax.maths.grads import analytic_grad
from linear_jax.maths.losses import LOSSES
from linear_jax.maths.losses import PENALTIES
from linear_jax.maths.losses import Loss
from linear_jax.maths.losses import get_loss
from linear_jax.maths.losses import objective
from linear_jax.maths.losses import register_loss
from linear_jax.maths.model import Params
from linear_jax.maths.model import add_bias_feature
from linear_jax.maths.model import fold_bias
from linear_jax.maths.model import init_params
from linear_jax.maths.model import predict
from linear_jax.maths.model import scores
from linear_jax.maths.model import softmax
from linear_jax.maths.model import unfold_bias
from linear_jax.maths.numpy_check import check_loss_and_grad

__version__ = '0.1.0'

# The library's public modules, by the short names the documentation uses (`from linear_jax import
# train`), imported on first use so that `import linear_jax` stays light.
_MODULES = {
  'datasets': 'linear_jax.data.datasets',
  'experiment': 'linear_jax.runs.experiment',
  'gradcheck': 'linear_jax.maths.gradcheck',
  'paths': 'linear_jax.tuning.paths',
  'plots': 'linear_jax.runs.plots',
  'search': 'linear_jax.tuning.search',
  'stream': 'linear_jax.datapath.stream',
  'sweep': 'linear_jax.tuning.sweep',
  'train': 'linear_jax.training.train',
}


# The training API, by name, likewise imported on first use.
_NAMES = {
  'TrainConfig': 'linear_jax.optim.config',
  'evaluate': 'linear_jax.training.train',
  'fit': 'linear_jax.training.train',
  'optimum': 'linear_jax.training.lbfgs',
}


def __getattr__(name):
  import importlib  # pylint: disable=import-outside-toplevel

  if name in _MODULES:
    return importlib.import_module(_MODULES[name])
  if name in _NAMES:
    return getattr(importlib.import_module(_NAMES[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
  'GRAD_SOURCES',
  'TrainConfig',
  'GradCheckReport',
  'LOSSES',
  'Loss',
  'PENALTIES',
  'Params',
  'add_bias_feature',
  'analytic_grad',
  'check_function_gradients',
  'check_gradients',
  'check_loss_and_grad',
  'custom_vjp_objective',
  'evaluate',
  'fit',
  'fold_bias',
  'get_loss',
  'init_params',
  'numerical_grad',
  'objective',
  'optimum',
  'predict',
  'register_loss',
  'relative_error',
  'scores',
  'softmax',
  'unfold_bias',
  'value_and_grad',
]
