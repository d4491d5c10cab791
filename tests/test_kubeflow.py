"""The Kubeflow V2 build: compiles, parses, and its steps run as a KFP container runs them."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import base_executor
from tfx.orchestration.kubeflow.v2 import compiler_utils
from tfx.types import artifact as artifact_lib
from tfx.utils import import_utils

import tfx_explain
from tfx_explain.kubeflow import runner as kubeflow_runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 'registry.example.com/ml/tfx-explain:0.1.0'
# Kubeflow V2's rule for custom artifact types (see NOTES on artifact titles).
CUSTOM_TITLE = re.compile(r'^[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}$')
ENTRYPOINT = 'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor'


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  out = tmp_path_factory.mktemp('kfp')
  pipeline = kubeflow_runner.create_pipeline('gs://bucket/tfx-explain')
  paths = kubeflow_runner.compile_pipeline(pipeline, str(out), image=IMAGE)
  spec = pipeline_spec_pb2.PipelineSpec()
  with open(paths['yaml']) as f:
    json_format.ParseDict(yaml.safe_load(f), spec)
  job = pipeline_spec_pb2.PipelineJob()
  with open(paths['json']) as f:
    json_format.Parse(f.read(), job, ignore_unknown_fields=False)
  return spec, job, paths


def executor_args(spec):
  """{task name: container args} for every container step."""
  tasks = spec.root.dag.tasks
  result = {}
  for name, task in tasks.items():
    label = spec.components[task.component_ref.name].executor_label
    executors = json_format.MessageToDict(spec.deployment_spec)['executors']
    result[name] = executors[label]['container']
  return result


def constant(task, key):
  """A task's constant parameter as a Python value (schema 2.0 and 2.1 spell it differently)."""
  value = task.inputs.parameters[key].runtime_value
  if value.HasField('constant'):
    return json_format.MessageToDict(value.constant)
  return list(json_format.MessageToDict(value.constant_value).values())[0]


def arg_value(args, flag):
  return args[args.index(flag) + 1]


def test_compiles_to_pipeline_spec_and_pipeline_job(compiled):
  spec, job, paths = compiled
  assert spec.pipeline_info.name == 'penguin-explain'
  assert set(spec.root.dag.tasks) == {
      'CsvExampleGen', 'StatisticsGen', 'SchemaGen', 'Trainer', 'Evaluator', 'AttributionGen',
      'ExplanationValidator', 'Pusher', 'PrunedModelTrainer', 'PrunedEvaluator',
      'PrunedAttributionGen', 'PrunedExplanationValidator'}
  # The PipelineJob carries the same spec, plus where artifacts go.
  job_spec = pipeline_spec_pb2.PipelineSpec()
  json_format.ParseDict(json_format.MessageToDict(job.pipeline_spec), job_spec)
  assert job_spec == spec
  assert job.runtime_config.gcs_output_directory == 'gs://bucket/tfx-explain'
  # Pusher is gated by our validator, which takes Evaluator's blessing.
  tasks = spec.root.dag.tasks
  pusher_blessing = tasks['Pusher'].inputs.artifacts['model_blessing'].task_output_artifact
  assert pusher_blessing.producer_task == 'ExplanationValidator'
  assert (tasks['ExplanationValidator'].inputs.artifacts['model_blessing']
          .task_output_artifact.producer_task == 'Evaluator')
  assert (tasks['PrunedExplanationValidator'].inputs.artifacts['baseline_attributions']
          .task_output_artifact.producer_task == 'AttributionGen')
  # Nothing from this machine leaks into the spec: data is read inside the image.
  text = open(paths['yaml']).read() + open(paths['json']).read()
  assert REPO not in text
  assert constant(tasks['CsvExampleGen'], 'input_base') == kubeflow_runner.CONTAINER_DATA_ROOT


def test_every_step_runs_our_image_and_an_importable_executor(compiled):
  spec, _, _ = compiled
  for name, container in executor_args(spec).items():
    assert container['image'] == IMAGE, name
    assert container['command'][-1] == ENTRYPOINT, name
    executor_cls = import_utils.import_class_by_path(
        arg_value(container['args'], '--executor_class_path'))
    assert issubclass(executor_cls, base_executor.BaseExecutor), name
    assert '--direct_running_mode=multi_processing' in container['args']
  ours = {n: arg_value(c['args'], '--executor_class_path')
          for n, c in executor_args(spec).items() if n.endswith(('AttributionGen', 'Validator',
                                                                  'PrunedModelTrainer'))}
  assert ours['AttributionGen'] == 'tfx_explain.attribution_gen.executor.Executor'
  assert ours['PrunedModelTrainer'] == 'tfx_explain.pruned_model_trainer.executor.Executor'


def test_every_artifact_schema_title_is_importable(compiled):
  spec, _, _ = compiled
  titles = set()
  for component in spec.components.values():
    for definitions in (component.input_definitions, component.output_definitions):
      for artifact_spec in definitions.artifacts.values():
        schema = yaml.safe_load(artifact_spec.artifact_type.instance_schema)
        titles.add(schema['title'])
  assert {'tfx_explain.Attributions', 'tfx_explain.ExplanationValidation',
          'tfx.Model', 'tfx.ModelBlessing', 'tfx.Examples'} <= titles
  for title in titles:
    # The container imports first-party types by a known path, custom ones by their title.
    path = compiler_utils.TITLE_TO_CLASS_PATH.get(title, title)
    artifact_cls = import_utils.import_class_by_path(path)
    assert issubclass(artifact_cls, artifact_lib.Artifact), title
    if not title.startswith('tfx.'):
      assert CUSTOM_TITLE.match(title), title
      assert not artifact_cls.PROPERTIES, f'{title} may not declare PROPERTIES on Kubeflow V2'


def test_config_parameters_round_trip(compiled):
  spec, _, _ = compiled
  tasks = spec.root.dag.tasks
  config = tfx_explain.AttributionConfig.from_json(constant(tasks['AttributionGen'], 'config'))
  assert [m.name for m in config.methods] == ['integrated_gradients', 'kernel_shap',
                                              'sampled_shapley']
  validation = constant(tasks['ExplanationValidator'], 'config')
  assert tfx_explain.ValidationConfig.from_json(validation).checks


def test_runner_command_line_writes_both_files(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'tfx_explain.kubeflow.runner', '--pipeline-root', 'gs://b/root',
       '--image', IMAGE, '--output-dir', str(tmp_path), '--no-pruning',
       '--beam-arg=--runner=DataflowRunner', '--beam-arg=--project=my-project',
       '--beam-arg=--region=europe-west4'],
      capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  spec = yaml.safe_load((tmp_path / 'penguin-explain.yaml').read_text())
  assert 'PrunedModelTrainer' not in spec['root']['dag']['tasks']
  args = spec['deploymentSpec']['executors']['AttributionGen_executor']['container']['args']
  assert args[-3:] == ['--runner=DataflowRunner', '--project=my-project', '--region=europe-west4']
  assert (tmp_path / 'penguin-explain.json').exists()


# --- one step, run the way a KFP v2 container runs it ----------------------------------------

def runtime_artifact(spec_artifact, uri, name, metadata=None):
  return {'name': name, 'uri': uri, 'metadata': metadata or {},
          'type': json_format.MessageToDict(spec_artifact.artifact_type)}


def run_step(spec, task_name, inputs, task_root):
  """Invokes TFX's Kubeflow V2 entrypoint as the container would, with inputs taken from the spec.

  `inputs` maps input keys to (uri, metadata) of upstream artifacts. Returns the
  parsed ExecutorOutput.
  """
  task = spec.root.dag.tasks[task_name]
  component = spec.components[task.component_ref.name]
  container = executor_args(spec)[task_name]
  executor_input = {'inputs': {'artifacts': {}, 'parameterValues': {}},
                    'outputs': {'artifacts': {},
                                'outputFile': os.path.join(task_root, 'executor_output.json')}}
  for key, (uri, metadata) in inputs.items():
    spec_artifact = component.input_definitions.artifacts[key]
    executor_input['inputs']['artifacts'][key] = {'artifacts': [
        runtime_artifact(spec_artifact, uri, f'artifacts/{task_name}-{key}', metadata)]}
  for key in task.inputs.parameters:
    executor_input['inputs']['parameterValues'][key] = constant(task, key)
  for key, spec_artifact in component.output_definitions.artifacts.items():
    executor_input['outputs']['artifacts'][key] = {'artifacts': [
        runtime_artifact(spec_artifact, os.path.join(task_root, key), f'artifacts/{task_name}-out')]}
  args = [a if a != '{{$}}' else json.dumps(executor_input) for a in container['args']]
  # Two processes keep it light on a 2-core machine; the rest is the compiled command line.
  args = [a for a in args if not a.startswith('--direct_num_workers')] + ['--direct_num_workers=2']
  result = subprocess.run([sys.executable] + container['command'][1:] + args,
                          capture_output=True, text=True, timeout=900, cwd=task_root)
  assert result.returncode == 0, result.stderr[-5000:]
  output = pipeline_spec_pb2.ExecutorOutput()
  with open(os.path.join(task_root, 'executor_output.json')) as f:
    json_format.Parse(f.read(), output)
  return output


@pytest.mark.slow
def test_our_steps_run_through_the_kubeflow_container_entrypoint(compiled, penguin_artifacts,
                                                                  tmp_path):
  spec, _, _ = compiled
  examples = penguin_artifacts.examples()
  model = penguin_artifacts.model()
  schema = penguin_artifacts.schema()
  attribution_root = tmp_path / 'AttributionGen'
  attribution_root.mkdir()
  output = run_step(spec, 'AttributionGen', {
      'examples': (examples.uri, {'split_names': examples.split_names}),
      'model': (model.uri, {}), 'schema': (schema.uri, {})}, str(attribution_root))

  [attributions] = output.artifacts['attributions'].artifacts
  metadata = json_format.MessageToDict(attributions.metadata)
  assert metadata['eval_example_count'] == len(penguin_artifacts.splits['eval'])
  assert metadata['model_uri'] == model.uri
  frame = tfx_explain.load_attributions(attributions.uri)
  assert set(frame['method']) == {'integrated_gradients', 'kernel_shap', 'sampled_shapley'}
  assert len(frame) == 3 * len(penguin_artifacts.splits['eval'])
  summary = tfx_explain.load_summary(attributions.uri, 'eval')
  assert summary.methods['integrated_gradients'].absolute_completeness_error.p95 < 0.05

  # The validator takes the attributions as KFP hands them over: uri plus metadata.
  validator_root = tmp_path / 'ExplanationValidator'
  validator_root.mkdir()
  output = run_step(spec, 'ExplanationValidator', {
      'attributions': (attributions.uri, metadata),
      'model_blessing': (str(tmp_path / 'evaluator_blessing'), {'blessed': 1}),
      'model': (model.uri, {})}, str(validator_root))
  [blessing] = output.artifacts['blessing'].artifacts
  blessing_metadata = json_format.MessageToDict(blessing.metadata)
  report = tfx_explain.load_validation(
      output.artifacts['validation'].artifacts[0].uri)
  assert blessing_metadata['blessed'] == int(report['blessed'])
  assert blessing_metadata['current_model'] == model.uri
  marker = 'BLESSED' if report['blessed'] else 'NOT_BLESSED'
  assert os.path.exists(os.path.join(blessing.uri, marker))
  checks = {r['check'] for r in report['checks']}
  assert {'completeness', 'model_blessing', 'attribution_drift', 'attribution_skew'} <= checks
  drift = [r for r in report['checks'] if r['check'] == 'attribution_drift']
  assert all(r['passed'] for r in drift)   # no baseline on Kubeflow: reported, not failed


# --- the image --------------------------------------------------------------------------------
# No Docker engine runs in CI, so these check the Dockerfile's two assumptions directly.

def test_dockerfile_puts_the_repository_where_the_runner_reads_data():
  dockerfile = open(os.path.join(REPO, 'kubeflow', 'Dockerfile')).read()
  [workdir] = re.findall(r'^WORKDIR (\S+)$', dockerfile, re.M)
  assert workdir == kubeflow_runner.CONTAINER_REPO
  assert kubeflow_runner.CONTAINER_DATA_ROOT.startswith(workdir + '/')
  relative = os.path.relpath(kubeflow_runner.CONTAINER_DATA_ROOT, workdir)
  assert os.listdir(os.path.join(REPO, relative)) == ['penguins.csv']
  ignored = open(os.path.join(REPO, '.dockerignore')).read().split()
  assert 'pipelines' not in ignored and '.venv' in ignored
  for line in re.findall(r'^COPY (.+) \./$', dockerfile, re.M):
    for source in line.split():
      assert source == '.' or os.path.exists(os.path.join(REPO, source)), source


def test_dependency_layer_builds_from_setup_py_alone(tmp_path):
  """The Dockerfile installs dependencies from setup.py before the package folders exist."""
  import shutil  # pylint: disable=g-import-not-at-top
  import zipfile  # pylint: disable=g-import-not-at-top
  for name in ('requirements-lock.txt', 'setup.py', 'pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(REPO, name), tmp_path / name)
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                  '-w', str(tmp_path / 'dist'), str(tmp_path)],
                 check=True, capture_output=True, timeout=300)
  [wheel] = list((tmp_path / 'dist').glob('tfx_explain-*.whl'))
  names = zipfile.ZipFile(wheel).namelist()
  assert not [n for n in names if n.endswith('.py')]
  metadata = zipfile.ZipFile(wheel).read(
      [n for n in names if n.endswith('METADATA')][0]).decode()
  assert 'Requires-Dist: tfx<1.17,>=1.16.0' in metadata
