# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Linear classifiers, losses and gradient descent, with linear_jax
#
# A walk through the lecture: the score function `f(x, W) = Wx + b` and its
# three viewpoints, the losses with the lecture's own numbers, a gradient
# derived by hand and checked three ways, and gradient descent with a sweep of
# learning rates. Every number the lecture quotes is checked by an `assert`, so
# the test suite, which runs this notebook top to bottom, fails if one changes.
#
# This file is the notebook (jupytext's percent format, so diffs read well).
# Open it in Jupyter with jupytext installed, or make a `.ipynb` with
# `jupytext --to notebook notebooks/lecture.py`; `pip install -r
# requirements-dev.txt -e .` installs both.

# %%
import pathlib
import tempfile

from IPython.display import Image
import jax
from jax.flatten_util import ravel_pytree

jax.config.update('jax_enable_x64', True)  # gradient checks need float64; training asks for float32 itself

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import linear_jax as lj
from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.runs import plots
from linear_jax.training import train
from linear_jax.tuning import sweep

pictures = pathlib.Path(tempfile.mkdtemp())  # the library's pictures are PNG files; shown from here

# %% [markdown]
# ## 1. Scores: `f(x, W) = Wx + b`
#
# One row of `W` per class, one column per input feature; the score of class
# `c` is `w_c · x + b_c`, and the prediction is the class with the highest
# score. The lecture's example: an image of 4 pixels and 3 classes.

# %%
params = lj.Params(
  W=jnp.array([[0.2, -0.5, 0.1, 2.0], [1.5, 1.3, 2.1, 0.0], [0.0, 0.25, 0.2, -0.3]]),  # [C, D]
  b=jnp.array([1.1, 3.2, -1.2]),  # [C]
)
x = jnp.array([[56.0, 231.0, 24.0, 2.0]])  # [N, D]: one image, pixels flattened
s = lj.scores(params, x)
print('scores (cat, dog, ship):', np.round(s[0], 2), '-> predicted class', int(lj.predict(params, x)[0]))
np.testing.assert_allclose(s[0], np.asarray(params.W) @ np.asarray(x[0]) + np.asarray(params.b))

# %% [markdown]
# **The bias trick**: append a constant feature 1 to `x` and the column `b` to
# `W`; one matrix product then gives the same scores.

# %%
folded = lj.fold_bias(params)  # W [C, D + 1], no separate b
print('W with the bias as its last column:', folded.W.shape)
np.testing.assert_allclose(lj.scores(folded, lj.add_bias_feature(x)), s)

# %% [markdown]
# ## 2. Three viewpoints, on real data
#
# The handwritten digits bundled with scikit-learn: 8×8 images, 10 classes.
# A softmax classifier trains in a few seconds.

# %%
digits = data.prepare(data.load('digits'), 'digits', seed=0)
cfg = config.TrainConfig(loss='softmax', epochs=10, learning_rate=0.1)
fitted = train.fit(cfg, digits)
accuracy = train.evaluate(cfg, digits, fitted.params)['test_accuracy']
print(f'test accuracy {accuracy:.3f} after {cfg.epochs} epochs')
assert accuracy > 0.9

# %% [markdown]
# **Algebraic viewpoint**: each test image gets 10 scores, `Wx + b`.

# %%
s_test = lj.scores(fitted.params, digits.x_test[:4])
print(np.round(np.asarray(s_test), 1))
print('predicted', np.asarray(s_test.argmax(1)), 'true', digits.y_test[:4])

# %% [markdown]
# **Visual viewpoint**: each row of `W` is a template of its class, drawn in
# the image's shape (red: pixels that raise the class's score).

# %%
Image(plots.templates(np.asarray(fitted.params.W), digits.image_shape, pictures / 'templates.png'))

# %% [markdown]
# **Geometric viewpoint**: on 2-D inputs, each class's score is zero on a line
# (a hyperplane `w_c · x + b_c = 0`), and the lines cut the plane into regions.

# %%
blobs = data.prepare(data.load('blobs', num_classes=3), 'blobs', preprocess='none', seed=0)
blob_params = train.fit(config.TrainConfig(loss='svm', epochs=10), blobs).params
Image(
  plots.decision_regions(
    np.asarray(blob_params.W),
    np.asarray(blob_params.b),
    blobs.x_train,
    blobs.y_train,
    pictures / 'regions.png',
  )
)

# %% [markdown]
# ## 3. Losses, with the lecture's numbers
#
# Three training examples (a cat, a car and a frog image) and three classes.
# To get exactly the lecture's scores from `f(x, W) = Wx`, take `x_i` to be the
# i-th unit vector and `W` the score table itself: column `i` of `W` is then
# the scores of example `i`.

# %%
table = np.array(  # rows: classes cat, car, frog; columns: the cat, car and frog images
  [[3.2, 1.3, 2.2], [5.1, 4.9, 2.5], [-1.7, 2.0, -3.1]]
)
lecture = lj.Params(W=jnp.asarray(table), b=jnp.zeros(3))
images, labels = jnp.eye(3), np.array([0, 1, 2])  # each image's label is its own class
np.testing.assert_allclose(lj.scores(lecture, images), table.T)

# %% [markdown]
# **Multiclass SVM loss** `L_i = Σ_{j≠y_i} max(0, s_j − s_{y_i} + 1)`; the
# lecture finds 2.9, 0 and 12.9, and their mean 5.27.

# %%
per_image = [float(lj.objective(lecture, images[i : i + 1], labels[i : i + 1], loss='svm')) for i in range(3)]
mean = float(lj.objective(lecture, images, labels, loss='svm'))
print('per image', np.round(per_image, 2), ' mean', round(mean, 2))
np.testing.assert_allclose(per_image, [2.9, 0.0, 12.9], atol=1e-12)
assert round(mean, 2) == 5.27

# %% [markdown]
# The lecture's questions, answered by computation:
#
# * *What if the car image's scores change a bit?* No change: its margins are
#   all met by more than the change.
# * *At initialization all `s ≈ 0`: what is the loss?* `C − 1`.
# * *What if the sum ran over all classes, `j = y_i` included?* It adds the
#   constant 1.
# * *If `W` gives `L = 0`, is it unique?* No: `2W` does too.

# %%
car = images[1:2], labels[1:2]
nudged = lj.Params(
  W=lecture.W.at[:, 1].add(0.3 * np.sign(np.random.default_rng(0).normal(size=3))), b=lecture.b
)
assert float(lj.objective(nudged, *car, loss='svm')) == 0.0

tiny = lj.Params(W=1e-6 * lecture.W, b=lecture.b)
print('loss at tiny W:', float(lj.objective(tiny, images, labels, loss='svm')))
assert abs(float(lj.objective(tiny, images, labels, loss='svm')) - (3 - 1)) < 1e-4

all_classes = np.maximum(0, table.T - table.T[np.arange(3), labels][:, None] + 1).sum(1)
np.testing.assert_allclose(all_classes, np.array(per_image) + 1)

perfect = lj.Params(W=jnp.eye(3) * 2.0, b=jnp.zeros(3))  # every correct score beats the others by 2 ≥ 1
for scale in (1.0, 2.0):
  assert float(lj.objective(perfect._replace(W=scale * perfect.W), images, labels, loss='svm')) == 0.0

# %% [markdown]
# **Softmax and cross-entropy**: `P(Y=k|x) = e^{s_k} / Σ_j e^{s_j}` and
# `L_i = −log P(Y = y_i|x_i)`. For the cat image the lecture finds
# probabilities 0.13, 0.87, 0.00 and `L = −log(0.13) = 2.04`; at
# initialization, with all scores equal, `L = log C` (about 2.3 for 10
# classes).

# %%
p_cat = np.asarray(lj.softmax(lj.scores(lecture, images[:1])))[0]
cat_loss = float(lj.objective(lecture, images[:1], labels[:1], loss='softmax'))
print('P(cat, car, frog | cat image) =', np.round(p_cat, 2), ' L =', round(cat_loss, 2))
np.testing.assert_allclose(np.round(p_cat, 2), [0.13, 0.87, 0.00])
assert round(cat_loss, 2) == 2.04
ten = lj.Params(W=jnp.zeros((10, 3)), b=jnp.zeros(10))
np.testing.assert_allclose(lj.objective(ten, images, labels, loss='softmax'), np.log(10))

# %% [markdown]
# **SVM against softmax**: move the cat image's correct score. The SVM loss is
# 0 once every margin is met; cross-entropy keeps asking for more.

# %%
moved = np.linspace(0, 10, 101)
curves = {'svm': [], 'softmax': []}
for v in moved:
  w = lecture.W.at[0, 0].set(v)
  for name, values in curves.items():
    values.append(float(lj.objective(lecture._replace(W=w), images[:1], labels[:1], loss=name)))
fig, ax = plt.subplots(figsize=(5, 3))
for name, values in curves.items():
  ax.plot(moved, values, label=name)
ax.set(xlabel='score of the correct class (cat)', ylabel='loss')
ax.legend()
plt.show()
assert curves['svm'][-1] == 0.0 and 0 < curves['softmax'][-1] < curves['softmax'][0]

# %% [markdown]
# **Regression losses and regularization**: `L1 = |y − Wx|`, `L2 = (y − Wx)²`,
# and a penalty `reg · R(W)` added to the mean loss (`R = Σ W²` or `Σ |W|`).

# %%
rng = np.random.default_rng(0)
xr, yr = rng.normal(size=(8, 3)), rng.normal(size=8)
reg_params = lj.Params(W=jnp.asarray(rng.normal(size=(1, 3))), b=jnp.zeros(1))
residual = yr - (xr @ np.asarray(reg_params.W).T)[:, 0]
np.testing.assert_allclose(lj.objective(reg_params, xr, yr, loss='l2'), np.mean(residual**2))
np.testing.assert_allclose(lj.objective(reg_params, xr, yr, loss='l1'), np.mean(np.abs(residual)))
np.testing.assert_allclose(
  lj.objective(reg_params, xr, yr, loss='l2', reg=0.1, penalty='l1'),
  np.mean(residual**2) + 0.1 * np.abs(np.asarray(reg_params.W)).sum(),
)

# %% [markdown]
# ## 4. A gradient derived by hand, checked three ways
#
# The lecture derives the gradient of the squared error of `f = wᵀx + b`:
# with `δ_k = y_k − wᵀx_k − b` and the mean over `N` examples,
#
# `∂L/∂w_j = −(2/N) Σ_k δ_k x_kj`,  `∂L/∂b = −(2/N) Σ_k δ_k`.
#
# Written in NumPy from that formula, it is checked against (1) the library's
# hand-derived gradient, (2) `jax.grad` of the loss and (3) finite
# differences: the lecture's forward difference `(f(w + h) − f(w)) / h` and
# central differences over every coordinate.

# %%
xg, yg = rng.normal(size=(20, 4)), rng.normal(size=20)
w0 = lj.Params(W=jnp.asarray(rng.normal(size=(1, 4))), b=jnp.asarray(rng.normal(size=1)))
delta = yg - (xg @ np.asarray(w0.W)[0] + float(w0.b[0]))
by_hand = lj.Params(W=(-2 / 20 * delta @ xg)[None, :], b=np.array([-2 / 20 * delta.sum()]))

loss_of = lambda p: lj.objective(p, xg, yg, loss='l2')
library = lj.analytic_grad(w0, xg, yg, loss='l2')
autodiff = jax.grad(loss_of)(w0)
central = lj.numerical_grad(loss_of, w0, h=1e-5, method='central')
flat, unravel = ravel_pytree(w0)  # the lecture's forward difference, one coordinate at a time
f0, h = loss_of(w0), 1e-4
forward = unravel(jnp.array([(loss_of(unravel(flat.at[i].add(h))) - f0) / h for i in range(flat.size)]))
for name, other, tol in (
  ('library', library, 1e-12),
  ('jax.grad', autodiff, 1e-12),
  ('central', central, 1e-8),
  ('forward', forward, 1e-3),
):
  err = max(float(lj.relative_error(a, b).max()) for a, b in zip(by_hand, other, strict=True))
  print(f'by hand vs {name:<9} max relative error {err:.1e}')
  assert err < tol

# %% [markdown]
# The library's own check does the same for any loss, and names the worst
# coordinates when a pair disagrees. Here the SVM loss, whose kinks are counted
# and judged by one-sided differences:

# %%
key = jax.random.PRNGKey(0)
xs, ys = rng.normal(size=(30, 5)), rng.integers(0, 4, 30)
svm_params = lj.init_params(key, num_features=5, num_classes=4, scale=1.0, dtype=jnp.float64)
report = lj.check_gradients(svm_params, xs, ys, loss='svm', reg=1e-2, method='central')
print(report.summary())
assert report.passed

# %% [markdown]
# ## 5. Gradient descent, and a sweep of learning rates
#
# `w ← w − α ∂L/∂w`, repeated: the lecture's update rule for the squared
# error, with the gradient derived above, on the diabetes data bundled with
# scikit-learn (10 features, a real target). For this loss the answer to
# "how large a step?" has a closed form: descent converges exactly when
# `α < 2 / λ_max`, the largest eigenvalue of the loss's Hessian
# `(2/N) [x 1]ᵀ[x 1]`. Four learning rates around that limit: too small
# crawls, just under it converges, just over it diverges.

# %%
diabetes = data.prepare(data.load('diabetes'), 'diabetes', seed=0, dtype=np.float64)
xd, yd = diabetes.x_train, diabetes.y_train
ones = np.hstack([xd, np.ones((len(xd), 1))])
limit = 2 / np.linalg.eigvalsh(2 / len(xd) * ones.T @ ones).max()
print(f'step size limit 2 / λ_max = {limit:.3f}')


@jax.jit
def descend(learning_rate):
  def step(p, _):
    g = lj.analytic_grad(p, xd, yd, loss='l2')
    return jax.tree.map(lambda w, dw: w - learning_rate * dw, p, g), lj.objective(p, xd, yd, loss='l2')

  start = lj.Params(W=jnp.zeros((1, xd.shape[1])), b=jnp.zeros(1))
  return jax.lax.scan(step, start, length=200)[1]


learning_rates = {'0.01 × limit': 0.01 * limit, '0.3 × limit': 0.3 * limit, '0.95 × limit': 0.95 * limit}
learning_rates['1.05 × limit'] = 1.05 * limit
curves = {name: np.asarray(descend(lr)) for name, lr in learning_rates.items()}
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for name, curve in curves.items():
  ax.plot(curve, label=f'α = {name}')
ax.set(xlabel='step', ylabel='training loss (mean squared error, standardized targets)', yscale='log')
ax.legend()
plt.show()
final = {name: float(c[-1]) for name, c in curves.items()}
print({name: f'{v:.4g}' for name, v in final.items()})
assert final['0.3 × limit'] < final['0.01 × limit'] < curves['0.01 × limit'][0]  # small steps crawl
assert final['0.95 × limit'] < 1.01 * final['0.3 × limit']  # under the limit: converges
assert final['1.05 × limit'] > curves['1.05 × limit'][0]  # over it: diverges

# %% [markdown]
# Classifiers have no such formula, so the learning rate is searched: a sweep
# of 12 learning rates × 2 regularization strengths for the digits, mini-batch
# SGD, all 24 models trained together as one compiled program and judged on
# the validation split.

# %%
settings = sweep.grid(list(np.geomspace(1e-3, 10, 12)), [0.0, 1e-3])
swept = sweep.run_sweep(config.TrainConfig(loss='softmax', epochs=5), digits, settings)
best = swept.setting_rows()[swept.best_setting()]
print('best setting:', {k: best[k] for k in ('learning_rate', 'reg')})
Image(
  plots.loss_vs_lr(
    np.geomspace(1e-3, 10, 12),
    [0.0, 1e-3],
    np.asarray(
      [[r['final_train_loss'] for r in swept.rows() if r['reg'] == reg] for reg in (0.0, 1e-3)], float
    ),
    pictures / 'loss_vs_lr.png',
  )
)
