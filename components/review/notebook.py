"""Notebook access to a pipeline's ML Metadata: runs, our artifacts, their lineage.

    from tfx_explain.review.notebook import PipelineStore
    store = PipelineStore('runs/penguin-explain/metadata.sqlite')
    store.runs()                                    # DataFrame, newest first
    store.artifacts('tfx_explain.Attributions')     # with producing node, run and inputs
    frame = store.load_attributions(node='AttributionGen')   # latest run's per-example table
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, List, Optional, Union

from tfx_explain.artifacts.layout import ATTRIBUTIONS_TYPE_NAME as ATTRIBUTIONS
from tfx_explain.artifacts.layout import VALIDATION_TYPE_NAME as VALIDATION


def _connection_config(source):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  if isinstance(source, metadata_store_pb2.ConnectionConfig):
    return source
  if isinstance(source, str):
    import os  # pylint: disable=g-import-not-at-top
    if not os.path.exists(source):
      raise FileNotFoundError(f'No ML Metadata sqlite file at {source}.')
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = source
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return config
  raise TypeError('Pass a sqlite file path or an ml_metadata ConnectionConfig '
                  f'(e.g. a MySQL one), got {type(source).__name__}.')


def _time(ms: int) -> datetime.datetime:
  return datetime.datetime.fromtimestamp(ms / 1000.0)


def _value(value) -> Any:
  kind = value.WhichOneof('value')
  if kind == 'struct_value':
    from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
    return json_format.MessageToDict(value.struct_value)
  return getattr(value, kind) if kind else None


class PipelineStore:
  """Read-only view of a pipeline's ML Metadata store."""

  def __init__(self, source: Union[str, Any]):
    from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
    self._store = metadata_store.MetadataStore(_connection_config(source))
    self._type_names: Dict[int, str] = {}

  @property
  def mlmd(self):
    return self._store

  def _context_type(self, type_id: int) -> str:
    if type_id not in self._type_names:
      self._type_names[type_id] = self._store.get_context_types_by_id([type_id])[0].name
    return self._type_names[type_id]

  def _contexts(self, execution_id: int) -> Dict[str, str]:
    return {self._context_type(c.type_id): c.name
            for c in self._store.get_contexts_by_execution(execution_id)}

  def runs(self):
    """One row per pipeline run: pipeline, run id, start, executions and their states."""
    import pandas as pd  # pylint: disable=g-import-not-at-top
    rows = []
    for context in self._store.get_contexts_by_type('pipeline_run'):
      executions = self._store.get_executions_by_context(context.id)
      pipelines = [c.name for c in self._store.get_contexts_by_execution(executions[0].id)
                   if self._context_type(c.type_id) == 'pipeline'] if executions else []
      states = [e.last_known_state for e in executions]
      rows.append({
          'pipeline': pipelines[0] if pipelines else '',
          'run': context.name,
          'started': _time(context.create_time_since_epoch),
          'executions': len(executions),
          'completed': sum(s in (e.COMPLETE, e.CACHED) for s, e in
                           zip(states, executions)),
          'failed': sum(s == e.FAILED for s, e in zip(states, executions)),
      })
    frame = pd.DataFrame(rows, columns=['pipeline', 'run', 'started', 'executions', 'completed',
                                        'failed'])
    return frame.sort_values('started', ascending=False).reset_index(drop=True)

  def artifacts(self, type_name: str = ATTRIBUTIONS, node: Optional[str] = None,
                run: Optional[str] = None, model_uri: Optional[str] = None,
                pipeline: Optional[str] = None):
    """Artifacts of a type with the pipeline, node and run that produced them and their inputs.

    Filter by pipeline name (a shared MySQL store holds many), node id (e.g.
    'AttributionGen'), run id, or the URI of the model they were computed
    from. Newest first.
    """
    import pandas as pd  # pylint: disable=g-import-not-at-top
    rows = []
    for artifact in self._store.get_artifacts_by_type(type_name):
      producer = self._producer(artifact.id)
      if producer is None:
        continue
      execution, contexts = producer
      node_id = contexts.get('node', '').split('.', 1)[-1]
      run_id = contexts.get('pipeline_run', '')
      inputs = self.inputs_of(execution.id)
      row = {'id': artifact.id, 'uri': artifact.uri, 'pipeline': contexts.get('pipeline', ''),
             'node': node_id, 'run': run_id,
             'state': 'LIVE' if artifact.state == artifact.LIVE else str(artifact.state),
             'created': _time(artifact.create_time_since_epoch),
             'model_uri': inputs.get('model', inputs.get('base_model', '')),
             'examples_uri': inputs.get('examples', '')}
      row.update({f'property.{k}': _value(v) for k, v in artifact.custom_properties.items()})
      rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
      return frame
    if pipeline is not None:
      frame = frame[frame['pipeline'] == pipeline]
    if node is not None:
      frame = frame[frame['node'] == node]
    if run is not None:
      frame = frame[frame['run'] == run]
    if model_uri is not None:
      frame = frame[frame['model_uri'] == model_uri]
    return frame.sort_values('id', ascending=False).reset_index(drop=True)

  def _producer(self, artifact_id: int):
    events = [e for e in self._store.get_events_by_artifact_ids([artifact_id])
              if e.type == e.OUTPUT]
    if not events:
      return None
    [execution] = self._store.get_executions_by_id([events[0].execution_id])
    return execution, self._contexts(execution.id)

  def inputs_of(self, execution_id: int) -> Dict[str, str]:
    """Input key -> URI of an execution (one artifact per key: the first)."""
    events = [e for e in self._store.get_events_by_execution_ids([execution_id])
              if e.type == e.INPUT]
    by_id = {a.id: a for a in self._store.get_artifacts_by_id([e.artifact_id for e in events])}
    result = {}
    for event in events:
      key = event.path.steps[0].key if event.path.steps else ''
      if key and key not in result and event.artifact_id in by_id:
        result[key] = by_id[event.artifact_id].uri
    return result

  def lineage(self, artifact_id: int):
    """Inputs of the execution that produced an artifact: key, type, URI, producing node."""
    import pandas as pd  # pylint: disable=g-import-not-at-top
    producer = self._producer(artifact_id)
    if producer is None:
      raise KeyError(f'Artifact {artifact_id} has no producing execution in this store.')
    execution, _ = producer
    events = [e for e in self._store.get_events_by_execution_ids([execution.id])
              if e.type == e.INPUT]
    rows = []
    for event in events:
      [artifact] = self._store.get_artifacts_by_id([event.artifact_id])
      upstream = self._producer(artifact.id)
      rows.append({
          'input': event.path.steps[0].key if event.path.steps else '',
          'type': self._store.get_artifact_types_by_id([artifact.type_id])[0].name,
          'id': artifact.id, 'uri': artifact.uri,
          'produced_by': upstream[1].get('node', '').split('.', 1)[-1] if upstream else ''})
    return pd.DataFrame(rows)

  def latest_uri(self, type_name: str, node: Optional[str] = None,
                 run: Optional[str] = None, pipeline: Optional[str] = None) -> Optional[str]:
    """URI of the newest LIVE artifact of a type (from one pipeline / node / run), or None."""
    frame = self.artifacts(type_name, node=node, run=run, pipeline=pipeline)
    live = frame[frame['state'] == 'LIVE'] if not frame.empty else frame
    return live.iloc[0]['uri'] if len(live) else None

  def _latest_uri(self, type_name, node, run):
    uri = self.latest_uri(type_name, node, run)
    if uri is None:
      raise LookupError(f'No {type_name} artifact'
                        f'{" from node " + repr(node) if node else ""}'
                        f'{" in run " + repr(run) if run else ""}.')
    return uri

  def load_attributions(self, node: str = 'AttributionGen', run: Optional[str] = None,
                        split: str = 'eval', method: Optional[str] = None):
    from tfx_explain.artifacts import tables  # pylint: disable=g-import-not-at-top
    return tables.load_attributions(self._latest_uri(ATTRIBUTIONS, node, run), split, method)

  def load_summary(self, node: str = 'AttributionGen', run: Optional[str] = None,
                   split: str = 'eval'):
    """The Summary of the newest attributions (`summary.importance_frame()` for a table)."""
    from tfx_explain.artifacts.summary import Summary  # pylint: disable=g-import-not-at-top
    return Summary.load(self._latest_uri(ATTRIBUTIONS, node, run), split)

  def load_validation(self, node: str = 'ExplanationValidator', run: Optional[str] = None):
    """The checks of a validation as a DataFrame (one row per check result)."""
    import pandas as pd  # pylint: disable=g-import-not-at-top
    from tfx_explain.artifacts import validation  # pylint: disable=g-import-not-at-top
    report = validation.load_validation(self._latest_uri(VALIDATION, node, run))
    frame = pd.DataFrame(report['checks'])
    frame.attrs['blessed'] = report['blessed']
    return frame


__all__: List[str] = ['PipelineStore']
