"""A shared ML Metadata store on MySQL (MariaDB): the penguin pipeline, two at once.

The server is Debian's mariadb-server (`make test` installs it), started here on
loopback with a throw-away data folder.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from tfx_explain.review.notebook import PipelineStore

DATABASE = 'mlmd'


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def mysql_server(tmp_path_factory):
  mariadbd = shutil.which('mariadbd') or '/usr/sbin/mariadbd'
  install_db = shutil.which('mariadb-install-db')
  if not (os.path.exists(mariadbd) and install_db):
    pytest.fail('MariaDB is not installed; `make test` installs it '
                '(apt-get install mariadb-server).')
  root = tmp_path_factory.mktemp('mariadb')
  subprocess.run([install_db, '--no-defaults', f'--datadir={root / "data"}', '--user=root',
                  '--skip-test-db', '--auth-root-authentication-method=normal'],
                 check=True, capture_output=True, timeout=300)
  port = free_port()
  # A test server on loopback only, so no accounts: every local client is admitted.
  server = subprocess.Popen(
      [mariadbd, '--no-defaults', f'--datadir={root / "data"}', f'--socket={root / "sock"}',
       f'--pid-file={root / "pid"}', f'--port={port}', '--bind-address=127.0.0.1',
       '--user=root', '--skip-grant-tables', '--max-connections=200'],
      stdout=subprocess.DEVNULL, stderr=open(root / 'server.log', 'w'))
  deadline = time.time() + 120
  while True:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      break
    except OSError:
      if server.poll() is not None or time.time() > deadline:
        raise RuntimeError('MariaDB did not start: ' + (root / 'server.log').read_text()[-2000:])
      time.sleep(0.5)
  config = tfx.orchestration.metadata.mysql_metadata_connection_config(
      host='127.0.0.1', port=port, database=DATABASE, username='root', password='')
  metadata_store.MetadataStore(config)   # creates the database and MLMD's tables once
  yield port, config
  server.terminate()
  server.wait(timeout=60)


@pytest.mark.slow
def test_two_penguin_pipelines_at_once_on_one_mysql_store(mysql_server, tmp_path):
  port, config = mysql_server
  names = ['penguin-east', 'penguin-west']
  processes = [subprocess.Popen(
      [sys.executable, '-m', 'tfx_explain.pipelines.penguin.run_local',
       '--run-root', str(tmp_path), '--pipeline-name', name, '--no-pruning',
       '--train-steps', '100', '--mysql-host', '127.0.0.1', '--mysql-port', str(port),
       '--mysql-database', DATABASE],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
  outputs = [p.communicate(timeout=1200) for p in processes]
  for process, (stdout, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-4000:]
    assert f'mysql://127.0.0.1:{port}/{DATABASE}' in stdout
    assert 'validation:' in stdout

  store = PipelineStore(config)
  runs = store.runs()
  assert sorted(runs['pipeline']) == names
  assert (runs['failed'] == 0).all() and (runs['completed'] == runs['executions']).all()
  for name in names:
    own_folder = os.path.join(str(tmp_path), name) + os.sep
    [attributions] = store.artifacts('tfx_explain.Attributions', pipeline=name).itertuples()
    assert attributions.state == 'LIVE' and attributions.uri.startswith(own_folder)
    lineage = store.lineage(attributions.id).set_index('input')
    assert lineage.loc['model', 'produced_by'] == 'Trainer'
    assert lineage.loc['examples', 'produced_by'] == 'CsvExampleGen'
    assert all(uri.startswith(own_folder) for uri in lineage['uri'])
    # The gate's blessing traces back to this pipeline's attributions, and Pusher used it.
    [blessing] = store.artifacts('ModelBlessing', pipeline=name,
                                 node='ExplanationValidator').itertuples()
    gate = store.lineage(blessing.id).set_index('input')
    assert gate.loc['attributions', 'uri'] == attributions.uri
    [pushed] = store.artifacts('PushedModel', pipeline=name).itertuples()
    assert store.lineage(pushed.id).set_index('input').loc['model_blessing', 'uri'] == \
        blessing.uri
