"""The front door: make's Python 3.10 check, and the package as users install it."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_make_without_python310_fails_fast_with_instructions(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  # A PATH with the basic tools but no Python 3.10 and no pyenv.
  for tool in ('bash', 'sh', 'make', 'ls', 'sort', 'cat', 'sha256sum', 'cut', 'rm', 'touch',
               'echo'):
    found = shutil.which(tool)
    if found:
      os.symlink(found, bin_dir / tool)
  env = {'PATH': str(bin_dir), 'HOME': str(tmp_path), 'PYENV_ROOT': str(tmp_path / 'no-pyenv')}
  for target in ('demo', 'test'):
    result = subprocess.run(['make', '-C', REPO, target, f'VENV={tmp_path}/venv'], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert 'needs Python 3.10' in result.stderr
    assert 'pyenv install 3.10' in result.stderr
    assert not (tmp_path / 'venv').exists()


def test_make_finds_pyenv_python310():
  result = subprocess.run(['make', '-s', '-C', REPO, 'python310'], capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == 0, result.stderr
  version = subprocess.run([result.stdout.strip(), '--version'], capture_output=True, text=True)
  assert version.stdout.startswith('Python 3.10')


@pytest.mark.slow
def test_wheel_contains_the_mapped_packages_and_imports(tmp_path):
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                  '-w', str(tmp_path / 'dist'), REPO], check=True, capture_output=True,
                 timeout=300)
  [wheel] = list((tmp_path / 'dist').glob('tfx_explain-*.whl'))
  names = zipfile.ZipFile(wheel).namelist()
  for expected in ('tfx_explain/__init__.py', 'tfx_explain/engine/gradients.py',
                   'tfx_explain/attribution_gen/executor.py',
                   'tfx_explain/pipelines/penguin/pipeline.py',
                   'tfx_explain/pipelines/penguin/data/penguins.csv',
                   'tfx_explain/pipelines/reviews/pipeline.py',
                   'tfx_explain/kubeflow/runner.py', 'tfx_explain/templates/project.py',
                   'tfx_explain/templates/penguin/pipeline/configs.py',
                   'tfx_explain/templates/penguin/models/model_test.py',
                   'tfx_explain/templates/penguin/Dockerfile',
                   'tfx_explain/templates/penguin/.dockerignore'):
    assert expected in names, expected
  entry_points = zipfile.ZipFile(wheel).read(
      [n for n in names if n.endswith('entry_points.txt')][0]).decode()
  assert 'tfx-explain = tfx_explain.cli:main' in entry_points
  assert not any(n.startswith(('components/', 'tests/')) for n in names)
  target = tmp_path / 'site'
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--target', str(target),
                  str(wheel)], check=True, capture_output=True, timeout=300)
  # The installed copy (not the editable checkout) must import, with its data.
  code = ('import tfx_explain, os; from tfx_explain import AttributionGen, IntegratedGradients; '
          'from tfx_explain.pipelines.penguin import pipeline; '
          'assert tfx_explain.__file__.startswith(os.environ["TARGET"]), tfx_explain.__file__; '
          'assert os.path.exists(os.path.join(pipeline.DATA_ROOT, "penguins.csv")); '
          'from tfx_explain.templates import project; '
          'files = project.copy_template("from-wheel", os.path.join(os.environ["TARGET"], "..", "p")); '
          'assert "data/penguins.csv" in files and "local_runner.py" in files, files')
  env = dict(os.environ, PYTHONPATH=str(target), TARGET=str(target))
  result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize('pipeline', ['penguin', 'digits', 'reviews'])
def test_demo_entry_points_run(pipeline):
  """`make demo` runs these modules: they must be runnable, not just importable."""
  result = subprocess.run([sys.executable, '-m', f'tfx_explain.pipelines.{pipeline}.run_local',
                           '--help'], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert '--run-root' in result.stdout
