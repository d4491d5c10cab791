"""A short pipeline for reliability tests: importers for examples, model and schema, then AttributionGen.

    python -m tests.explain_pipeline SETTINGS.json

runs it with LocalDagRunner; SETTINGS.json holds the keyword arguments of
`create_pipeline` (config as AttributionConfig JSON, metadata as a sqlite path
or a MySQL {host, port, database}).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top

from tfx_explain import AttributionConfig, AttributionGen  # pylint: disable=g-import-not-at-top


def metadata_config(metadata: Any):
  if isinstance(metadata, dict):
    return tfx.orchestration.metadata.mysql_metadata_connection_config(
        host=metadata['host'], port=metadata['port'], database=metadata['database'],
        username=metadata.get('username', 'root'), password=metadata.get('password', ''))
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata)


def create_pipeline(name: str, root: str, metadata: Any, examples_uri: str, model_uri: str,
                    schema_uri: str, config: str, enable_cache: bool = False,
                    split_names: Optional[List[str]] = None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    raw_config: Optional[str] = None) -> tfx.dsl.Pipeline:
  """`raw_config` replaces the component's config JSON as given, unchecked: what a
  hand-edited or stale compiled config hands the executor."""
  examples = tfx.dsl.Importer(
      source_uri=examples_uri, artifact_type=tfx.types.standard_artifacts.Examples,
      properties={'split_names': json.dumps(split_names or ['train', 'eval'])},
  ).with_id('examples_importer')
  model = tfx.dsl.Importer(source_uri=model_uri,
                           artifact_type=tfx.types.standard_artifacts.Model).with_id('model_importer')
  schema = tfx.dsl.Importer(source_uri=schema_uri, artifact_type=tfx.types.standard_artifacts.Schema
                            ).with_id('schema_importer')
  attribution_gen = AttributionGen(
      examples=examples.outputs['result'], model=model.outputs['result'],
      schema=schema.outputs['result'], config=AttributionConfig.from_json(config))
  if raw_config is not None:
    attribution_gen.exec_properties['config'] = raw_config
  return tfx.dsl.Pipeline(
      pipeline_name=name, pipeline_root=root,
      components=[examples, model, schema, attribution_gen], enable_cache=enable_cache,
      metadata_connection_config=metadata_config(metadata),
      beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])


def run(settings: Dict[str, Any]) -> None:
  tfx.orchestration.LocalDagRunner().run(create_pipeline(**settings))


if __name__ == '__main__':
  with open(sys.argv[1]) as f:
    run(json.load(f))
