"""Beam's portable job API on loopback: a job service and a pool of SDK worker processes.

The job service (`local_job_service_main`) takes jobs through the same job API
that Flink's and Spark's job servers and Dataflow runner v2 use, and runs them
with Beam's FnApiRunner; every DoFn runs in an SDK harness that the separate
worker pool (`worker_pool_main`, the EXTERNAL environment) starts as a child
process per worker. A test module takes the fixture by naming it:

    from tests import portable_beam as services
    portable_beam = services.portable_beam
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

START_SECONDS = 60
STOP_SECONDS = 20


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _accepts(port):
  try:
    # The job service binds 'localhost', which may be ::1 or 127.0.0.1.
    socket.create_connection(('localhost', port), timeout=1).close()
    return True
  except OSError:
    return False


def _stat_fields(pid):
  try:
    with open(f'/proc/{pid}/stat') as f:
      # After '(command)': state ppid pgrp ... utime (11) stime (12).
      return f.read().rsplit(')', 1)[1].split()
  except OSError:
    return None


def _stat(pid):
  """(ppid, cpu seconds) of a live process, or None."""
  fields = _stat_fields(pid)
  if not fields:
    return None
  return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def group_members(pgid):
  """Pids of the running (not zombie) processes in a process group."""
  members = []
  for name in os.listdir('/proc'):
    fields = _stat_fields(name) if name.isdigit() else None
    if fields and int(fields[2]) == pgid and fields[0] != 'Z':
      members.append(int(name))
  return members


def _cmdline(pid):
  try:
    with open(f'/proc/{pid}/cmdline', 'rb') as f:
      return f.read().replace(b'\0', b' ').decode(errors='replace')
  except OSError:
    return ''


def _loaded_tensorflow(pid):
  try:
    with open(f'/proc/{pid}/maps') as f:
      return any('libtensorflow_framework' in line for line in f)
  except OSError:
    return False


class WorkerWatch:
  """Samples the worker pool's child processes while a run lasts.

  The workers are started per job and stopped after it, so they are seen only
  while they live: every `interval` seconds each new child's command line, CPU
  seconds so far and whether TensorFlow's runtime is mapped into it. Workers
  of earlier jobs still stopping when the watch starts are not counted.
  """

  def __init__(self, pool_pid, interval=0.2):
    self._pool_pid = pool_pid
    self._interval = interval
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self.workers = {}   # pid -> {'cmdline', 'cpu_seconds', 'tensorflow'}
    self._earlier = set()

  def _run(self):
    while not self._stop.is_set():
      self.sample()
      self._stop.wait(self._interval)

  def _children(self):
    for name in os.listdir('/proc'):
      fields = _stat_fields(name) if name.isdigit() else None
      if fields and int(fields[1]) == self._pool_pid and fields[0] != 'Z':
        yield int(name)

  def sample(self):
    for pid in self._children():
      stat = _stat(pid)
      if pid in self._earlier or not stat:
        continue
      seen = self.workers.setdefault(pid, {'cmdline': '', 'cpu_seconds': 0.0,
                                           'tensorflow': False})
      # The latest: a child seen between fork and exec still shows the pool's.
      seen['cmdline'] = _cmdline(pid) or seen['cmdline']
      seen['cpu_seconds'] = max(seen['cpu_seconds'], stat[1])
      seen['tensorflow'] = seen['tensorflow'] or _loaded_tensorflow(pid)

  def __enter__(self):
    self._earlier = set(self._children())
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


class PortableBeam:
  """The two running services, their logs and the Beam arguments that use them."""

  def __init__(self, root):
    self.root = root
    self.job_port, self.pool_port = free_port(), free_port()
    self.staging_dir = os.path.join(root, 'staging')
    self.job_log = os.path.join(root, 'job_service.log')
    self.pool_log = os.path.join(root, 'worker_pool.log')
    self.processes = []
    self.beam_args = ['--runner=PortableRunner', f'--job_endpoint=localhost:{self.job_port}',
                      '--environment_type=EXTERNAL',
                      f'--environment_config=localhost:{self.pool_port}']

  def _spawn(self, module, args, log, env=None):
    # Its own session and process group, so that stopping the group also ends
    # the SDK workers the pool starts.
    with open(log, 'w') as out:   # the child keeps its own copy of the descriptor
      process = subprocess.Popen([sys.executable, '-m', module] + args,
                                 stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
    self.processes.append(process)
    return process

  def start(self):
    self.job_service = self._spawn(
        'apache_beam.runners.portability.local_job_service_main',
        [f'--port={self.job_port}', f'--staging_dir={self.staging_dir}'], self.job_log)
    # The pool starts each worker as `python` from PATH: this environment's.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep +
               os.environ.get('PATH', ''))
    self.pool = self._spawn('apache_beam.runners.worker.worker_pool_main',
                            [f'--service_port={self.pool_port}'], self.pool_log, env=env)
    deadline = time.time() + START_SECONDS
    waiting = [(self.job_service, self.job_port), (self.pool, self.pool_port)]
    while waiting:
      waiting = [(p, port) for p, port in waiting if not _accepts(port)]
      exited = [p for p in self.processes if p.poll() is not None]
      if waiting and (exited or time.time() > deadline):
        why = (f'exited: {[p.args[2] for p in exited]}' if exited else
               f'not accepting connections after {START_SECONDS} s: '
               f'{[p.args[2] for p, _ in waiting]}')
        raise RuntimeError(f'Beam services did not start ({why}):\n{self.logs()}')
      if waiting:
        time.sleep(0.2)

  def logs(self, tail=3000):
    text = []
    for name in (self.job_log, self.pool_log):
      with open(name, errors='replace') as f:
        text.append(f'--- {os.path.basename(name)}\n{f.read()[-tail:]}')
    return '\n'.join(text)

  def jobs(self):
    """The jobs the job service ran, asked through the job API: [(state name, labels)].

    TFX labels each Beam job with the executor that made it
    (`--labels tfx_executor=...`), which the job's pipeline options carry.
    """
    import grpc  # pylint: disable=g-import-not-at-top
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc  # pylint: disable=g-import-not-at-top
    with grpc.insecure_channel(f'localhost:{self.job_port}') as channel:
      response = beam_job_api_pb2_grpc.JobServiceStub(channel).GetJobs(
          beam_job_api_pb2.GetJobsRequest(), timeout=30)
    jobs = []
    for info in response.job_info:
      options = info.pipeline_options.fields
      labels = [v.string_value for v in options['beam:option:labels:v1'].list_value.values] \
          if 'beam:option:labels:v1' in options else []
      jobs.append((beam_job_api_pb2.JobState.Enum.Name(info.state), labels))
    return jobs

  def pool_output(self):
    with open(self.pool_log, errors='replace') as f:
      return f.read()

  def members(self):
    """Pid -> command line of every process left in the services' groups."""
    return {pid: _cmdline(pid) for p in self.processes for pid in group_members(p.pid)}

  def stop(self):
    """Terminates each process group, kills it after STOP_SECONDS."""
    for process in self.processes:
      if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    for process in self.processes:
      try:
        process.wait(timeout=STOP_SECONDS)
      except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)
    # The leaders are reaped; their groups' other members (workers) may still be
    # going down.
    deadline = time.time() + STOP_SECONDS
    while time.time() < deadline and self.members():
      time.sleep(0.2)
    for process in self.processes:
      if group_members(process.pid):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope='module')
def portable_beam(tmp_path_factory):
  """A running job service and worker pool on loopback; stopped and checked afterwards."""
  services = PortableBeam(str(tmp_path_factory.mktemp('portable_beam')))
  try:
    services.start()
    yield services
  finally:
    services.stop()
    left = services.members()
    assert not left, f'processes left after stopping the Beam services: {left}'
