"""Exact solvers: full-batch L-BFGS as one compiled loop, scipy's L-BFGS-B on host evaluations,
closed-form ridge (`lbfgs`). The optimum f* of a dataset is `linear_jax.optimum` (`training.lbfgs`),
which runs them over the data path."""

from linear_jax.solvers.lbfgs import LbfgsInfo
from linear_jax.solvers.lbfgs import check_smooth
from linear_jax.solvers.lbfgs import minimize
from linear_jax.solvers.lbfgs import minimize_host
from linear_jax.solvers.lbfgs import ridge_closed_form
from linear_jax.solvers.lbfgs import solve

__all__ = ['LbfgsInfo', 'check_smooth', 'minimize', 'minimize_host', 'ridge_closed_form', 'solve']
