"""notebooks/lecture.py runs top to bottom in a Jupyter kernel, as a reader would run it.

The notebook asserts the lecture's numbers itself (SVM losses 2.9 / 0 / 12.9,
mean 5.27; softmax 0.13 / 0.87 / 0.00 and 2.04; the step-size limit), so a
cell that raises fails this test.
"""

import os
import pathlib

import jupytext
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_lecture_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
  # The kernel imports this checkout's linear_jax, whatever the environment's install points at.
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])))
  monkeypatch.delenv('MPLBACKEND', raising=False)
  notebook = jupytext.read(ROOT / 'notebooks' / 'lecture.py')
  client = NotebookClient(
    notebook, timeout=300, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}
  )
  client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  printed = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  assert 'per image [ 2.9  0.  12.9]  mean 5.27' in printed
  assert 'by hand vs jax.grad' in printed and ': OK' in printed
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) == 5  # templates, regions, SVM vs softmax, the descent curves, loss vs learning rate


def test_the_readme_opens_the_notebook_with_what_the_test_command_installs(tmp_path):
  import re  # pylint: disable=import-outside-toplevel

  import nbformat  # pylint: disable=import-outside-toplevel

  readme = (ROOT / 'README.md').read_text()
  command = 'jupytext --to ipynb notebooks/lecture.py && jupyter notebook notebooks/lecture.ipynb'
  assert re.search(rf'^{re.escape(command)}$', readme, re.M)
  pinned = {
    line.split('==')[0].strip().lower()
    for line in (ROOT / 'requirements-dev.txt').read_text().splitlines()
    if '==' in line and not line.startswith('#')
  }
  assert {'jupytext', 'notebook', 'ipykernel'} <= pinned  # `jupytext`, `jupyter notebook` and its kernel
  # The first half of the command, as jupytext does it: a valid notebook whose code is the file's.
  notebook = jupytext.read(ROOT / 'notebooks' / 'lecture.py')
  nbformat.write(notebook, tmp_path / 'lecture.ipynb')
  nbformat.validate(nbformat.read(tmp_path / 'lecture.ipynb', as_version=4))
  assert sum(c.cell_type == 'code' for c in notebook.cells) > 5
