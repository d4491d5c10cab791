"""`tfx-explain template copy`: a project that runs as copied, and a copy that refuses bad input."""

import os
import shutil
import subprocess
import sys

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_explain import cli
from tfx_explain.templates import project

CLI = os.path.join(os.path.dirname(sys.executable), 'tfx-explain')


def run(args, cwd, timeout=900):
  result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
  return result


@pytest.mark.slow
def test_copied_template_runs_with_local_dag_runner(tmp_path):
  dest = tmp_path / 'my-penguins'
  run([CLI, 'template', 'copy', '--name', 'my-penguins', '--dest', str(dest)], cwd=tmp_path)
  assert (dest / 'data' / 'penguins.csv').exists()
  assert "PIPELINE_NAME = 'my-penguins'" in (dest / 'pipeline' / 'configs.py').read_text()
  assert not list(dest.rglob('*{{*'))
  assert '{{' not in ''.join(p.read_text() for p in dest.rglob('*.py'))

  run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'models'], cwd=dest)
  run([sys.executable, 'local_runner.py'], cwd=dest)

  store = metadata_store.MetadataStore(metadata_store_pb2.ConnectionConfig(
      sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(
          filename_uri=str(dest / 'tfx_metadata' / 'my-penguins' / 'metadata.db'))))
  executions = store.get_executions()
  assert executions and all(e.last_known_state == metadata_store_pb2.Execution.COMPLETE
                            for e in executions)
  [attributions] = store.get_artifacts_by_type('tfx_explain.Attributions')
  [validation] = store.get_artifacts_by_type('tfx_explain.ExplanationValidation')
  assert attributions.custom_properties['eval_example_count'].int_value > 50
  assert validation.custom_properties['blessed'].int_value == 1
  pushed = dest / 'tfx_pipeline_output' / 'my-penguins' / 'serving_model'
  assert len(os.listdir(pushed)) == 1

  run([sys.executable, 'kubeflow_v2_runner.py', str(tmp_path / 'kfp')], cwd=dest)
  spec = (tmp_path / 'kfp' / 'my-penguins.yaml').read_text()
  assert 'tfx_explain.attribution_gen.executor.Executor' in spec
  assert '/pipeline/data' in spec and str(dest) not in spec


def test_copy_writes_into_an_empty_folder_only(tmp_path):
  (tmp_path / 'taken').mkdir()
  (tmp_path / 'taken' / 'notes.txt').write_text('mine')
  with pytest.raises(FileExistsError, match='taken'):
    project.copy_template('fine-name', str(tmp_path / 'taken'))
  assert os.listdir(tmp_path / 'taken') == ['notes.txt']
  (tmp_path / 'empty').mkdir()
  written = project.copy_template('fine-name', str(tmp_path / 'empty'))
  assert 'pipeline/configs.py' in written and 'data/penguins.csv' in written
  assert sorted(os.listdir(tmp_path)) == ['empty', 'taken']   # no staging folder left


@pytest.mark.parametrize('name', ['My_Pipeline', '1st', '', 'a/b', '../up', 'x' * 64])
def test_copy_refuses_names_kubeflow_would_not_take(tmp_path, name):
  with pytest.raises(ValueError, match='Pipeline name'):
    project.copy_template(name, str(tmp_path / 'p'))
  assert not os.listdir(tmp_path)


def test_copy_refuses_template_entries_that_leave_the_destination(tmp_path, monkeypatch):
  templates = tmp_path / 'templates'
  shutil.copytree(os.path.join(project.TEMPLATES_DIR, 'penguin'), templates / 'penguin',
                  ignore=shutil.ignore_patterns('__pycache__'))
  (tmp_path / 'secret.txt').write_text('outside')
  os.symlink(tmp_path / 'secret.txt', templates / 'penguin' / 'pipeline' / 'linked.txt')
  monkeypatch.setattr(project, 'TEMPLATES_DIR', str(templates))
  with pytest.raises(ValueError, match='outside'):
    project.copy_template('fine-name', str(tmp_path / 'out' / 'p'))
  assert os.listdir(tmp_path / 'out') == []   # staging removed, nothing published


def test_command_line_reports_errors_without_a_traceback(tmp_path, capsys):
  assert cli.main(['template', 'copy', '--name', 'Bad_Name', '--dest', str(tmp_path / 'p')]) == 2
  assert 'Pipeline name' in capsys.readouterr().err
  assert cli.main(['template', 'list']) == 0
  assert 'penguin' in capsys.readouterr().out
