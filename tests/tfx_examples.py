"""TFX's own example pipelines as test material, their modules copied unmodified at test time.

    modules = copy_penguin_modules(dest)           # from the installed tfx package
    write_penguins_processed_csv(data_dir)         # the columns tfx/examples/penguin expects
    trained = run_penguin_transform_trainer(root)  # ExampleGen -> Transform -> Trainer, LocalDagRunner

TFX ships the example modules but not their data: the rows are generated from
the palmerpenguins package with the columns and scaling the examples expect.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Dict, Optional

import numpy as np

PENGUIN_FEATURES = ['culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm', 'body_mass_g']
PENGUIN_LABEL = 'species'


def tfx_example_path(*parts: str) -> str:
  import tfx  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(tfx.__file__), 'examples', *parts)


def copy_penguin_modules(dest: str) -> Dict[str, str]:
  """penguin_utils_keras.py and penguin_utils_base.py, byte for byte, into dest."""
  os.makedirs(dest, exist_ok=True)
  copied = {}
  for name in ('penguin_utils_keras.py', 'penguin_utils_base.py'):
    target = os.path.join(dest, name)
    shutil.copyfile(tfx_example_path('penguin', name), target)
    copied[name] = target
  return copied


def write_penguins_processed_csv(data_dir: str) -> str:
  """penguins_processed.csv as tfx/examples/penguin uses it: int species, features min-max scaled."""
  import palmerpenguins  # pylint: disable=g-import-not-at-top
  frame = palmerpenguins.load_penguins()
  frame = frame.rename(columns={'bill_length_mm': 'culmen_length_mm',
                                'bill_depth_mm': 'culmen_depth_mm'})
  frame = frame[[PENGUIN_LABEL] + PENGUIN_FEATURES].dropna().reset_index(drop=True)
  frame[PENGUIN_LABEL] = frame[PENGUIN_LABEL].map(
      {'Adelie': 0, 'Chinstrap': 1, 'Gentoo': 2}).astype(np.int64)
  for name in PENGUIN_FEATURES:
    column = frame[name].astype(np.float64)
    frame[name] = (column - column.min()) / (column.max() - column.min())
  os.makedirs(data_dir, exist_ok=True)
  path = os.path.join(data_dir, 'penguins_processed.csv')
  frame.to_csv(path, index=False)
  return path


@dataclasses.dataclass
class TrainedPenguin:
  """Artifacts of TFX's penguin example after Transform and Trainer."""
  root: str
  examples_uri: str
  schema_uri: str
  transform_graph_uri: str
  transformed_examples_uri: str
  model_uri: str
  metadata_path: str
  module_file: str
  data_root: str


def penguin_base_components(data_root: str, module_file: str, train_steps: int = 300):
  """The first half of tfx/examples/penguin's pipeline, as its local pipeline wires it."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  example_gen = tfx.components.CsvExampleGen(input_base=data_root)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'],
                                        infer_feature_shape=True)
  transform = tfx.components.Transform(examples=example_gen.outputs['examples'],
                                       schema=schema_gen.outputs['schema'],
                                       module_file=module_file)
  trainer = tfx.components.Trainer(
      module_file=module_file, examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'], schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=5))
  return example_gen, statistics_gen, schema_gen, transform, trainer


def run_penguin_transform_trainer(root: str, train_steps: int = 300,
                                  extra_components=None) -> TrainedPenguin:
  """Runs ExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer with LocalDagRunner."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx_explain.notebook import PipelineStore  # pylint: disable=g-import-not-at-top
  modules = copy_penguin_modules(os.path.join(root, 'modules'))
  data_root = os.path.join(root, 'data')
  write_penguins_processed_csv(data_root)
  metadata_path = os.path.join(root, 'metadata.sqlite')
  components = list(penguin_base_components(data_root, modules['penguin_utils_keras.py'],
                                            train_steps))
  if extra_components:
    components += extra_components(*components)
  pipeline = tfx.dsl.Pipeline(
      pipeline_name='tfx-penguin-example', pipeline_root=os.path.join(root, 'pipeline_root'),
      components=components, enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          metadata_path),
      beam_pipeline_args=['--direct_num_workers=1'])
  tfx.orchestration.LocalDagRunner().run(pipeline)
  store = PipelineStore(metadata_path)
  return TrainedPenguin(
      root=root,
      examples_uri=store.latest_uri('Examples', 'CsvExampleGen'),
      schema_uri=store.latest_uri('Schema', 'SchemaGen'),
      transform_graph_uri=store.latest_uri('TransformGraph', 'Transform'),
      transformed_examples_uri=store.latest_uri('Examples', 'Transform'),
      model_uri=store.latest_uri('Model', 'Trainer'),
      metadata_path=metadata_path, module_file=modules['penguin_utils_keras.py'],
      data_root=data_root)


def serialized_examples(examples_uri: str, split: str, limit: Optional[int] = None):
  """The serialized tf.Examples of one split, in file order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f'Split-{split}', '*')))
  records = []
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP'):
    records.append(record.numpy())
    if limit is not None and len(records) >= limit:
      break
  return records
