"""Every output file of every command, with a link planted at its name, a folder in its place, a full disk.

Nothing outside the workdir is touched, and each failure is one line (a
`ValueError`, which the commands print as `Error: ...`).
"""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.runs import experiment
from linear_jax.runs import search_run
from linear_jax.runs import sweep_run
from linear_jax.training import checkpoint
from linear_jax.training import files
from linear_jax.training import workdir as workdir_lib

CFG = config.TrainConfig(epochs=2, batch_size=32)
DATA = experiment.DataConfig(dataset='blobs', num_examples=120)


def _train(workdir, **options):
  return experiment.train_and_evaluate(CFG, DATA, str(workdir), experiment.RunOptions(**options))


def _sweep(workdir):
  ds = data.prepare(data.blobs(90, 2, 3, seed=0), 'blobs')
  sweep_run.sweep_and_write(
    config.TrainConfig(epochs=2, batch_size=30), ds, str(workdir), [0.1], [0.0],
    checkpoint_path=os.path.join(workdir, 'sweep_checkpoint.npz'),
  )  # fmt: skip


def _search(workdir):
  """search's writers: its checkpoint (`search_state.Segments`), search.json and search.png."""
  segments = search_run.open_segments(str(workdir), {'budget': 10}, 1, False)
  segments.label = 'random'
  segments.finish('random', {'method': 'random', 'loss': 1.0}, [1, 2], [1.0, 0.5])
  curves = {'blobs': {'random': (np.array([1, 2]), np.array([1.0, 0.5]))}}
  search_run.write_outputs(str(workdir), 10, [{'method': 'random', 'loss': 1.0}], curves)


COMMANDS = {  # each command's library writer, and the files it writes
  'train': (lambda w: _train(w, plots=True), [*experiment.OUTPUTS[:4], 'curves.png']),
  'lr_sweep': (_sweep, ['sweep.json', 'sweep.csv', 'sweep_checkpoint.npz', 'curves.png']),
  'search': (_search, ['search.json', 'search.png', 'search_checkpoint.npz']),
}
CASES = [(c, name) for c, (_, names) in COMMANDS.items() for name in names]


def _one_line(e):
  assert isinstance(e.value, ValueError) and '\n' not in str(e.value), str(e.value)


@pytest.mark.parametrize(('command', 'name'), CASES)
def test_a_link_planted_at_an_output_is_replaced_not_followed(tmp_path, command, name):
  outside, work = tmp_path / 'outside.txt', tmp_path / 'work'
  outside.write_text('precious')
  work.mkdir()
  (work / name).symlink_to(outside)
  COMMANDS[command][0](work)
  assert outside.read_text() == 'precious'
  assert (work / name).is_file() and not (work / name).is_symlink()


@pytest.mark.parametrize(('command', 'name'), CASES)
def test_a_folder_in_place_of_an_output_is_one_line(tmp_path, command, name):
  (tmp_path / name).mkdir()
  (tmp_path / name / 'keep').write_text('x')
  with pytest.raises(ValueError) as e:
    COMMANDS[command][0](tmp_path)
  _one_line(e)
  assert name in str(e.value) and (tmp_path / name / 'keep').read_text() == 'x'


class _FullDisk:
  """A file whose writes fail as on a full disk."""

  def __init__(self, f):
    self._f = f

  def write(self, _):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


@pytest.mark.parametrize('command', list(COMMANDS))
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, command, monkeypatch):
  monkeypatch.setattr(files, '_fdopen', lambda fd, mode, **kw: _FullDisk(os.fdopen(fd, mode, **kw)))
  monkeypatch.setattr(files, '_write', lambda fd, b: (_ for _ in ()).throw(OSError(errno.ENOSPC, 'full')))
  with pytest.raises(ValueError, match='No space left on device|full') as e:
    COMMANDS[command][0](tmp_path)
  _one_line(e)
  assert not [p for p in os.listdir(tmp_path) if p.startswith(files.TEMP_PREFIX)]


def test_a_full_disk_leaves_the_last_checkpoint_intact(tmp_path, monkeypatch):
  path = str(tmp_path / 'checkpoint.npz')
  checkpoint.save(path, [np.arange(3.0)], {'epoch': 1})
  monkeypatch.setattr(files, '_fdopen', lambda fd, mode, **kw: _FullDisk(os.fdopen(fd, mode, **kw)))
  with pytest.raises(files.WriteError, match=r'checkpoint.npz: cannot be written \(No space left on device'):
    checkpoint.save(path, [np.arange(3.0) + 1], {'epoch': 2})
  arrays, meta = checkpoint.read(path)
  assert meta == {'epoch': 1} and arrays[0].tolist() == [0.0, 1.0, 2.0]


def test_the_lock_refuses_a_link_or_a_pipe(tmp_path):
  outside = tmp_path / 'outside.txt'
  outside.write_text('precious')
  (tmp_path / 'work').mkdir()
  (tmp_path / 'work' / workdir_lib.LOCK).symlink_to(outside)
  with pytest.raises(ValueError, match=r'\.lock: cannot be the lock of --workdir=.* \(a symbolic link\)'):
    with workdir_lib.locked(str(tmp_path / 'work')):
      pass
  assert outside.read_text() == 'precious'
  # A hard link to a file elsewhere, or a named pipe, at the lock's name: refused, the file untouched.
  for name, plant in (('hard', lambda p: os.link(outside, p)), ('pipe', os.mkfifo)):
    (tmp_path / name).mkdir()
    plant(tmp_path / name / workdir_lib.LOCK)
    with pytest.raises(
      ValueError, match=r'\.lock: cannot be the lock of --workdir=.* \(not a file of its own\)'
    ):
      with workdir_lib.locked(str(tmp_path / name)):
        pass
  assert outside.read_text() == 'precious'


def test_a_killed_fresh_rerun_leaves_no_output_of_the_run_before(tmp_path):
  _train(tmp_path, plots=False)
  assert (tmp_path / 'summary.json').exists() and (tmp_path / 'params.npz').exists()

  def killed(metrics):
    raise SystemExit('killed')  # as SIGKILL would: nothing after the first epoch is written

  with pytest.raises(SystemExit):
    experiment.train_and_evaluate(
      CFG, DATA, str(tmp_path), experiment.RunOptions(plots=False), on_epoch=killed
    )
  assert not (tmp_path / 'summary.json').exists() and not (tmp_path / 'params.npz').exists()
  assert len((tmp_path / 'metrics.jsonl').read_text().splitlines()) == 1  # the new run's epoch alone


def test_workdir_of_other_files_is_refused_and_nothing_not_ours_is_deleted(tmp_path):
  with pytest.raises(ValueError, match=r'--workdir=/etc holds files this project did not write'):
    workdir_lib.claim('/etc')
  home = tmp_path / 'home'
  home.mkdir()
  (home / 'notes.txt').write_text('mine')
  with pytest.raises(ValueError, match=r'holds files this project did not write \(notes.txt\)'):
    workdir_lib.claim(str(home))
  assert os.listdir(home) == ['notes.txt']
  work = tmp_path / 'work'
  workdir_lib.claim(str(work))  # a new folder: taken, and marked
  assert (work / workdir_lib.MARKER).exists()
  (work / 'notes.txt').write_text('mine')
  workdir_lib.claim(str(work))  # marked: the user's own files beside the outputs are fine
  for name in ('.write-test', '.tmp-mine.npz', 'notes.txt'):
    (work / name).write_text('mine')
  _train(work, plots=False)
  checkpoint.remove_stale(str(work))
  assert all((work / n).read_text() == 'mine' for n in ('.write-test', '.tmp-mine.npz', 'notes.txt'))


def test_a_folder_of_the_users_own_figures_or_another_commands_outputs_is_refused(tmp_path):
  # Files named as outputs (curves.png, summary.json) made a folder look like an older workdir: a run
  # replaced the user's own; and train's outputs and a sweep's piled up in one folder.
  paper = tmp_path / 'paper'
  paper.mkdir()
  for name, text in (('curves.png', 'my figure'), ('summary.json', '{"mine": 1}'), ('metrics.jsonl', '')):
    (paper / name).write_text(text)
  (paper / workdir_lib.LOCK).write_text('')  # common names: none of them proves a run of ours
  with pytest.raises(
    ValueError, match=r'outputs, but none a run of it wrote \(curves.png, metrics.jsonl, summary'
  ):
    workdir_lib.claim(str(paper), command='train')
  assert sorted(os.listdir(paper)) == [workdir_lib.LOCK, 'curves.png', 'metrics.jsonl', 'summary.json']
  (paper / 'notes.txt').write_text('mine')  # what is not an output is named first
  with pytest.raises(ValueError, match=r'holds files this project did not write \(notes.txt\)'):
    workdir_lib.claim(str(paper), command='train')
  python = tmp_path / 'from_python'  # a run of experiment.train_and_evaluate leaves no marker: its outputs
  python.mkdir()  # name train, and another command is refused there
  _train(python, plots=False)
  with pytest.raises(ValueError, match=r'from_python holds the outputs of `train`'):
    workdir_lib.claim(str(python), command='lr_sweep')
  assert workdir_lib.claim(str(python), command='train') == str(python)
  failed = tmp_path / 'failed'  # a run refused after the claim leaves only the marker and the lock
  workdir_lib.claim(str(failed), command='train')
  (failed / workdir_lib.LOCK).write_text('')
  assert workdir_lib.claim(str(failed), command='lr_sweep') == str(failed)
  work = tmp_path / 'work'
  workdir_lib.claim(str(work), command='train')
  workdir_lib.claim(str(work), command='train')  # its own command again
  (work / 'params.npz').write_text('')  # train's output
  with pytest.raises(ValueError, match=r'work holds the outputs of `train`; each command writes to a folder'):
    workdir_lib.claim(str(work), command='lr_sweep')
  (work / workdir_lib.MARKER).write_text('A workdir of linear_jax: its runs write their outputs here.\n')
  workdir_lib.claim(str(work), command='lr_sweep')  # a marker naming no command, no signed output: taken
  with pytest.raises(ValueError, match=r'holds the outputs of `lr_sweep`'):
    workdir_lib.claim(str(work), command='train')
  os.chmod(work / workdir_lib.MARKER, 0)  # whose it is cannot be told: refused (root reads it anyway)
  if not os.access(work / workdir_lib.MARKER, os.R_OK):
    with pytest.raises(ValueError, match=r'cannot be read .*whose workdir this is cannot be told'):
      workdir_lib.claim(str(work), command='train')


def test_a_workdir_a_live_run_holds_is_refused_before_its_marker_is_touched(tmp_path):
  # The claim came before the lock: a refused command rewrote the live run's marker, and then the run's
  # own command was refused there.
  work = tmp_path / 'work'
  workdir_lib.claim(str(work), command='train')
  with workdir_lib.locked(str(work)):
    for command in ('lr_sweep', 'hard_cases', 'train'):
      with pytest.raises(workdir_lib.Locked, match=r'work is in use by another run \(process \d+'):
        workdir_lib.claim(str(work), command=command)
    assert (work / workdir_lib.MARKER).read_text().startswith('A workdir of linear_jax train:')
  assert workdir_lib.claim(str(work), command='train') == str(work)


def test_outputs_take_the_permissions_a_plain_open_gives(tmp_path):
  """`mkstemp` creates 0600: a report, a summary or a checkpoint was readable by its owner alone, whatever
  the umask; they are shared as any new file is (0644 under umask 022, 0600 under 077)."""
  code = 'import sys; from linear_jax.training import files; files.write_text(sys.argv[1], "x")'
  for umask in (0o022, 0o077):
    path = tmp_path / f'out{umask:o}.txt'
    # The umask set by a shell: a preexec_fn would fork this multithreaded (JAX) process.
    subprocess.run(
      ['sh', '-c', f'umask {umask:o} && exec "$0" -c \'{code}\' "$1"', sys.executable, str(path)], check=True
    )
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
