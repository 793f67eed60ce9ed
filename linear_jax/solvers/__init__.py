"""Exact solvers: full-batch L-BFGS as one compiled loop, scipy's L-BFGS-B on host evaluations,
the optimum f*, closed-form ridge (`lbfgs`)."""

from linear_jax.solvers.lbfgs import LbfgsInfo
from linear_jax.solvers.lbfgs import check_smooth
from linear_jax.solvers.lbfgs import minimize
from linear_jax.solvers.lbfgs import minimize_host
from linear_jax.solvers.lbfgs import optimum
from linear_jax.solvers.lbfgs import ridge_closed_form
from linear_jax.solvers.lbfgs import solve

__all__ = ['LbfgsInfo', 'check_smooth', 'minimize', 'minimize_host', 'optimum', 'ridge_closed_form', 'solve']
