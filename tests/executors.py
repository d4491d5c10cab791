"""Our executors run on artifacts on disk, as TFX hands them over, for tests of any model."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

IN_MEMORY_BEAM = ['--direct_num_workers=1', '--direct_running_mode=in_memory']


def examples_artifact(uri: str, splits: Optional[List[str]] = None):
  from tfx.types import artifact_utils, standard_artifacts  # pylint: disable=g-import-not-at-top
  artifact = standard_artifacts.Examples()
  artifact.uri = uri
  artifact.split_names = artifact_utils.encode_split_names(splits or ['train', 'eval'])
  return artifact


def artifact(kind: str, uri: str):
  """A standard artifact ('Model', 'Schema', 'TransformGraph', ...) at uri."""
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  made = getattr(standard_artifacts, kind)()
  made.uri = uri
  return made


def _output(kind, uri: str):
  made = kind()
  made.uri = uri
  os.makedirs(uri, exist_ok=True)
  return made


def run_attribution_gen(inputs: Dict[str, Any], output_uri: str, config,
                        beam_args: Optional[List[str]] = None):
  """AttributionGen's executor; inputs maps its input keys to single artifacts.

  config: an AttributionConfig, or the JSON handed to the executor as it is (unchecked,
  as a hand-edited or stale compiled pipeline would).
  """
  from tfx_explain.attribution_gen import executor as executor_lib  # pylint: disable=g-import-not-at-top
  from tfx_explain.types import Attributions  # pylint: disable=g-import-not-at-top
  output = _output(Attributions, output_uri)
  config_json = config if isinstance(config, str) else config.to_json()
  context = executor_lib.Executor.Context(beam_pipeline_args=beam_args or IN_MEMORY_BEAM,
                                          tmp_dir=os.path.join(output_uri, '..', 'tmp'))
  executor_lib.Executor(context).Do({k: [v] for k, v in inputs.items()},
                                    {'attributions': [output]}, {'config': config_json})
  return output


def run_pruned_model_trainer(inputs: Dict[str, Any], root: str, config):
  """PrunedModelTrainer's executor; returns (model, model_run) output artifacts."""
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from tfx_explain.pruned_model_trainer import executor as executor_lib  # pylint: disable=g-import-not-at-top
  model = _output(standard_artifacts.Model, os.path.join(root, 'pruned'))
  model_run = _output(standard_artifacts.ModelRun, os.path.join(root, 'pruned_run'))
  executor_lib.Executor().Do({k: [v] for k, v in inputs.items()},
                             {'model': [model], 'model_run': [model_run]},
                             {'config': config.to_json()})
  return model, model_run
