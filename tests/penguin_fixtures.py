"""Real artifacts on disk for executor tests: penguin examples, schema, trained model."""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

import tfx_explain.pipelines.penguin

# The penguin pipeline's data (tfx_explain.pipelines.penguin.pipeline.DATA_ROOT). Its
# pipeline and trainer modules import TFX: they load only in the functions that need them.
CSV = os.path.join(os.path.dirname(tfx_explain.pipelines.penguin.__file__), 'data', 'penguins.csv')


@dataclasses.dataclass
class PenguinArtifacts:
  root: str
  examples_uri: str
  schema_uri: str
  model_uri: str
  frame: pd.DataFrame
  splits: Dict[str, pd.DataFrame]

  def examples(self, uri: Optional[str] = None, splits: Optional[List[str]] = None):
    from tfx.types import artifact_utils, standard_artifacts  # pylint: disable=g-import-not-at-top
    artifact = standard_artifacts.Examples()
    artifact.uri = uri or self.examples_uri
    artifact.split_names = artifact_utils.encode_split_names(splits or ['train', 'eval'])
    return artifact

  def model(self, uri: Optional[str] = None):
    from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
    artifact = standard_artifacts.Model()
    artifact.uri = uri or self.model_uri
    return artifact

  def schema(self):
    from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
    artifact = standard_artifacts.Schema()
    artifact.uri = self.schema_uri
    return artifact


def to_example(row: dict) -> bytes:
  feature = {}
  for name, value in row.items():
    if isinstance(value, (bytes, str)):
      data = value.encode() if isinstance(value, str) else value
      feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))
    elif isinstance(value, (int, np.integer)):
      feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    elif isinstance(value, list):
      feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
    else:
      feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
  # Deterministic: a map's serialized order otherwise follows the process's string hashing,
  # and the reference sample is ordered by a keyed hash of the record bytes.
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
      deterministic=True)


def write_split(examples_uri: str, split: str, rows: List[dict], shards: int = 1,
                gzip: bool = True) -> List[str]:
  directory = os.path.join(examples_uri, f'Split-{split}')
  os.makedirs(directory, exist_ok=True)
  paths = []
  for shard in range(shards):
    suffix = '.gz' if gzip else ''
    path = os.path.join(directory, f'data_tfrecord-{shard:05d}-of-{shards:05d}{suffix}')
    options = tf.io.TFRecordOptions(compression_type='GZIP' if gzip else '')
    with tf.io.TFRecordWriter(path, options) as writer:
      for row in rows[shard::shards]:
        writer.write(to_example(row))
    paths.append(path)
  return paths


def penguin_schema():
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  from tfx_explain.pipelines.penguin import trainer_module  # pylint: disable=g-import-not-at-top
  schema = schema_pb2.Schema()
  features = ([(n, schema_pb2.FLOAT) for n in trainer_module.FLOAT_FEATURES] +
              [(n, schema_pb2.BYTES) for n in trainer_module.STRING_FEATURES] +
              [(trainer_module.LABEL_KEY, schema_pb2.INT)])
  for name, kind in features:
    feature = schema.feature.add(name=name, type=kind)
    feature.shape.dim.add(size=1)
    feature.presence.min_fraction = 1.0
    feature.presence.min_count = 1
  return schema


def rows_of(frame: pd.DataFrame) -> List[dict]:
  rows = []
  for record in frame.to_dict('records'):
    record['species'] = int(record['species'])
    rows.append(record)
  return rows


def train_model(train: pd.DataFrame, schema, model_uri: str, epochs: int = 40,
                seed: int = 7) -> str:
  """The penguin pipeline's Keras model trained on `train`, saved as Trainer would."""
  from tfx_explain.pipelines.penguin import trainer_module  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(seed)
  stats = {n: tf.constant(train[n].values.astype(np.float32)) for n in trainer_module.FLOAT_FEATURES}
  stats.update({n: tf.constant(train[n].values.astype(bytes)) for n in trainer_module.STRING_FEATURES})
  model = trainer_module.build_model(stats)
  inputs = {n: train[n].values.astype(np.float32).reshape(-1, 1)
            for n in trainer_module.FLOAT_FEATURES}
  inputs.update({n: train[n].values.astype(bytes).reshape(-1, 1)
                 for n in trainer_module.STRING_FEATURES})
  model.fit(inputs, train['species'].values, epochs=epochs, batch_size=32, verbose=0)
  model.save(os.path.join(model_uri, 'Format-Serving'), save_format='tf',
             signatures={'serving_default': trainer_module._serving_signature(model, schema)})  # pylint: disable=protected-access
  return model_uri


def write_examples(examples_uri: str, splits: Dict[str, pd.DataFrame]) -> str:
  for split, part in splits.items():
    write_split(examples_uri, split, rows_of(part), shards=2 if split == 'train' else 1)
  return examples_uri


def make_penguin_artifacts(root: str, epochs: int = 40) -> PenguinArtifacts:
  frame = pd.read_csv(CSV)
  eval_mask = (np.arange(len(frame)) % 3) == 0
  splits = {'train': frame[~eval_mask].reset_index(drop=True),
            'eval': frame[eval_mask].reset_index(drop=True)}
  examples_uri = write_examples(os.path.join(root, 'examples'), splits)
  schema = penguin_schema()
  schema_uri = os.path.join(root, 'schema')
  os.makedirs(schema_uri)
  with open(os.path.join(schema_uri, 'schema.pbtxt'), 'w') as f:
    from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
    f.write(text_format.MessageToString(schema))

  model_uri = os.path.join(root, 'model')
  train_model(splits['train'], schema, model_uri, epochs)
  return PenguinArtifacts(root, examples_uri, schema_uri, model_uri, frame, splits)
