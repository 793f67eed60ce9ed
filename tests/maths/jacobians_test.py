"""The lecture's Jacobian conventions, with jax.jacrev / jax.jacfwd beside the hand-derived ones."""

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import jacobians

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_convention_has_the_lecture_shape_and_the_derived_value():
  found = {
    j.name: j for j in jacobians.lecture_jacobians(jax.random.PRNGKey(3), num_features=5, num_classes=4)
  }
  expected = {
    'dv/ds': (4, 1),  # m × 1: a column
    'dL/ds': (1, 4),  # 1 × m: a row
    'ds/dx': (4, 5),  # row i is ∂s_i/∂x
    'ds/dvec(W)': (4, 20),
    'dL/dW': (4, 5),  # the shape of W
    'd vec(S)/d vec(X)': (2 * 4, 2 * 4),  # a batch of two 2×2 images, flattened
  }
  assert {n: j.autodiff.shape for n, j in found.items()} == expected
  for j in found.values():
    assert j.derived.shape == j.shape
    np.testing.assert_allclose(j.autodiff, j.derived, rtol=1e-5, atol=1e-6, err_msg=j.name)


def test_jacobian_row_i_is_the_gradient_of_output_i():
  w = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
  f = lambda v: jnp.tanh(w @ v)
  v = jnp.linspace(-1, 1, 5)
  jac = jax.jacrev(f)(v)
  for i in range(3):
    np.testing.assert_allclose(jac[i], jax.grad(lambda v_: f(v_)[i])(v), rtol=1e-6)
  np.testing.assert_allclose(jax.jacfwd(f)(v), jac, rtol=1e-6)


def test_a_cifar_sized_classifier_takes_memory_of_the_size_of_its_jacobians():
  # ds/dvec(W) of 10 classes x 3,072 features is [10, 30,720]; forward mode pushed 30,720 tangents of
  # [30,720] through it and peaked at 11.4 GB. Measured in a process of its own.
  code = (
    'import jax\n'
    'from linear_jax.maths import jacobians\n'
    'js = jacobians.lecture_jacobians(jax.random.PRNGKey(0), num_features=3072, num_classes=10)\n'
    'j = next(j for j in js if j.name == "ds/dvec(W)")\n'
    'assert j.autodiff.shape == (10, 30720) and float(abs(j.autodiff - j.derived).max()) == 0.0\n'
    # VmHWM, the peak of this program's own memory (ru_maxrss keeps the forking worker's across exec).
    'print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))\n'
  )
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert int(out.stdout.split()[-1]) < 2 * 2**20  # KB: under 2 GB (0.4 GB measured)


def test_the_command_refuses_a_size_whose_jacobian_cannot_fit_before_computing_it():
  out = subprocess.run(
    [sys.executable, '-m', 'experiments.jacobians', '--num_features=100000', '--num_classes=100000'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert out.returncode == 1
  assert out.stderr.startswith('Error: jacobians: ds/dvec(W) [100,000 x 10,000,000,000] needs ')
  assert 'use fewer --num_classes or --num_features' in out.stderr and out.stderr.count('\n') == 1


def test_the_image_batch_row_names_the_weights_of_its_own_images():
  # Its formula said `I_B ⊗ W` beside a W of 4 pixel columns, while the classifier's W above had 1.
  rows = {j.name: j for j in jacobians.lecture_jacobians(num_features=1, num_classes=2)}
  images = rows['d vec(S)/d vec(X)']
  assert images.formula == 'I_B ⊗ W_img (W_img [2, 4] of 2×2 images)'
  assert images.derived.shape == (4, 8) and rows['ds/dx'].derived.shape == (2, 1)
