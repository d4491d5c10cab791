"""TensorFlow Decision Forests models trained on the penguins, saved as TFX's Trainer saves them.

    model_dir = train_forest(dest, 'random_forest' | 'gradient_boosted_trees')

Inputs: the four numerical measurements and the `island` string (a categorical
input for the forest); `serving_default` parses serialized tf.Examples.
"""

from __future__ import annotations

import os

import numpy as np

FLOAT_FEATURES = ['bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'body_mass_g']
STRING_FEATURES = ['island']
FEATURES = FLOAT_FEATURES + STRING_FEATURES
LABEL = 'species'


def penguin_table(seed: int = 0):
  """(features dict of numpy columns, int labels) of every complete penguin row."""
  import palmerpenguins  # pylint: disable=g-import-not-at-top
  frame = palmerpenguins.load_penguins().dropna(subset=FEATURES + [LABEL])
  frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
  features = {n: frame[n].to_numpy(np.float32) for n in FLOAT_FEATURES}
  for name in STRING_FEATURES:
    features[name] = frame[name].to_numpy().astype(bytes).astype(object)
  labels = frame[LABEL].map({'Adelie': 0, 'Chinstrap': 1, 'Gentoo': 2}).to_numpy(np.int64)
  return features, labels


def train_forest(dest: str, kind: str, num_trees: int = 20, seed: int = 0,
                 binary: bool = False) -> str:
  """Trains and saves a TF-DF classifier (Adelie or not with binary=True); returns the
  model directory (Format-Serving inside)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_decision_forests as tfdf  # pylint: disable=g-import-not-at-top
  features, labels = penguin_table(seed)
  if binary:
    labels = (labels == 0).astype(np.int64)
  columns = {n: (v.astype(str) if v.dtype == object else v) for n, v in features.items()}
  dataset = tf.data.Dataset.from_tensor_slices((columns, labels)).batch(64)
  common = dict(task=tfdf.keras.Task.CLASSIFICATION, num_trees=num_trees, verbose=0,
                random_seed=seed)
  if kind == 'random_forest':
    model = tfdf.keras.RandomForestModel(max_depth=6, **common)
  elif kind == 'gradient_boosted_trees':
    model = tfdf.keras.GradientBoostedTreesModel(max_depth=4, shrinkage=0.3,
                                                 validation_ratio=0.0, **common)
  else:
    raise ValueError(kind)
  model.fit(dataset)
  spec = {n: tf.io.FixedLenFeature([], tf.float32) for n in FLOAT_FEATURES}
  spec.update({n: tf.io.FixedLenFeature([], tf.string) for n in STRING_FEATURES})

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    return {'outputs': model(tf.io.parse_example(serialized, spec))}

  path = os.path.join(dest, 'Format-Serving')
  model.save(path, save_format='tf', signatures={'serving_default': serve})
  return dest


def serialized_rows(features, rows) -> list:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  records = []
  for i in rows:
    feature = {n: tf.train.Feature(float_list=tf.train.FloatList(value=[features[n][i]]))
               for n in FLOAT_FEATURES}
    feature.update({n: tf.train.Feature(bytes_list=tf.train.BytesList(value=[features[n][i]]))
                    for n in STRING_FEATURES})
    records.append(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())
  return records
