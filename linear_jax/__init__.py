"""linear_jax: linear classifiers and regressors learned by gradient descent."""

from linear_jax import more_losses  # noqa: F401 - registers squared_hinge, huber, crammer_singer
from linear_jax.grad_sources import GRAD_SOURCES
from linear_jax.grad_sources import custom_vjp_objective
from linear_jax.grad_sources import value_and_grad
from linear_jax.gradcheck import GradCheckReport
from linear_jax.gradcheck import check_function_gradients
from linear_jax.gradcheck import check_gradients
from linear_jax.gradcheck import numerical_grad
from linear_jax.gradcheck import relative_error
from linear_jax.grads import analytic_grad
from linear_jax.losses import LOSSES
from linear_jax.losses import PENALTIES
from linear_jax.losses import Loss
from linear_jax.losses import get_loss
from linear_jax.losses import objective
from linear_jax.losses import register_loss
from linear_jax.model import Params
from linear_jax.model import add_bias_feature
from linear_jax.model import fold_bias
from linear_jax.model import init_params
from linear_jax.model import predict
from linear_jax.model import scores
from linear_jax.model import softmax
from linear_jax.model import unfold_bias
from linear_jax.numpy_check import check_loss_and_grad

__version__ = '0.1.0'

__all__ = [
  'GRAD_SOURCES',
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
  'fold_bias',
  'get_loss',
  'init_params',
  'numerical_grad',
  'objective',
  'predict',
  'register_loss',
  'relative_error',
  'scores',
  'softmax',
  'unfold_bias',
  'value_and_grad',
]
