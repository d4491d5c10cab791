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

from tfx_explain.pipelines import tfx_wiring
from tfx_explain.pipelines.reviews import data as reviews_data

PENGUIN_FEATURES = ['culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm', 'body_mass_g']
PENGUIN_LABEL = 'species'


def tfx_example_path(*parts: str) -> str:
  import tfx  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(tfx.__file__), 'examples', *parts)


def copy_example_modules(example: str, names, dest: str) -> Dict[str, str]:
  """Modules of tfx/examples/<example>, byte for byte, into dest."""
  os.makedirs(dest, exist_ok=True)
  copied = {}
  for name in names:
    target = os.path.join(dest, name)
    shutil.copyfile(tfx_example_path(example, name), target)
    copied[name] = target
  return copied


PENGUIN_KERAS_MODULE = 'penguin_utils_keras.py'
PENGUIN_TFDF_MODULE = 'penguin_utils_tfdf_experimental.py'


def copy_penguin_modules(dest: str) -> Dict[str, str]:
  return copy_example_modules('penguin', (PENGUIN_KERAS_MODULE, PENGUIN_TFDF_MODULE,
                                          'penguin_utils_base.py'), dest)


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
class TrainedExample:
  """Artifacts of one of TFX's example pipelines after Transform and Trainer."""
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
  transform, trainer = tfx_wiring.transform_and_trainer(example_gen, schema_gen, module_file,
                                                        train_steps, eval_steps=5)
  return example_gen, statistics_gen, schema_gen, transform, trainer


def explain_validate_push(serving_dir: str, example_gen, schema_gen, transform, trainer,
                          attribution_config, validation_config):
  """[AttributionGen, ExplanationValidator, Pusher gated by its blessing] after the Trainer,
  on the raw examples through the Transform."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  import tfx_explain  # pylint: disable=g-import-not-at-top
  attributions = tfx_explain.AttributionGen(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      schema=schema_gen.outputs['schema'], transform_graph=transform.outputs['transform_graph'],
      config=attribution_config)
  validator = tfx_explain.ExplanationValidator(
      attributions=attributions.outputs['attributions'], model=trainer.outputs['model'],
      transform_graph=transform.outputs['transform_graph'], config=validation_config)
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'], model_blessing=validator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
          base_directory=serving_dir)))
  return [attributions, validator, pusher]


def run_example_pipeline(root: str, name: str, components, module_file: str,
                         data_root: str) -> TrainedExample:
  """Runs one of TFX's example pipelines (its components up to the Trainer, and any after it)
  with LocalDagRunner on a sqlite store under root; returns its artifacts."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx_explain.review.notebook import PipelineStore  # pylint: disable=g-import-not-at-top
  metadata_path = os.path.join(root, 'metadata.sqlite')
  pipeline = tfx.dsl.Pipeline(
      pipeline_name=name, pipeline_root=os.path.join(root, 'pipeline_root'),
      components=components, enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          metadata_path),
      beam_pipeline_args=['--direct_num_workers=1'])
  tfx.orchestration.LocalDagRunner().run(pipeline)
  store = PipelineStore(metadata_path)
  return TrainedExample(
      root=root,
      examples_uri=store.latest_uri('Examples', 'CsvExampleGen'),
      schema_uri=store.latest_uri('Schema', 'SchemaGen'),
      transform_graph_uri=store.latest_uri('TransformGraph', 'Transform'),
      transformed_examples_uri=store.latest_uri('Examples', 'Transform'),
      model_uri=store.latest_uri('Model', 'Trainer'),
      metadata_path=metadata_path, module_file=module_file, data_root=data_root)


def run_penguin_transform_trainer(root: str, train_steps: int = 300,
                                  extra_components=None,
                                  module: str = PENGUIN_KERAS_MODULE) -> TrainedExample:
  """Runs ExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer with LocalDagRunner,
  the Trainer on `module` (the Keras one, or TF Decision Forests')."""
  modules = copy_penguin_modules(os.path.join(root, 'modules'))
  data_root = os.path.join(root, 'data')
  write_penguins_processed_csv(data_root)
  components = list(penguin_base_components(data_root, modules[module], train_steps))
  if extra_components:
    components += extra_components(*components)
  return run_example_pipeline(root, 'tfx-penguin-example', components, modules[module],
                              data_root)


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


# -- the taxi template (tfx template copy --model=taxi) ---------------------------------------

TAXI_COLUMNS = ['pickup_community_area', 'fare', 'trip_start_month', 'trip_start_hour',
                'trip_start_day', 'trip_start_timestamp', 'pickup_latitude', 'pickup_longitude',
                'dropoff_latitude', 'dropoff_longitude', 'trip_miles', 'pickup_census_tract',
                'dropoff_census_tract', 'payment_type', 'company', 'trip_seconds',
                'dropoff_community_area', 'tips']


def copy_taxi_template(destination: str, pipeline_name: str = 'taxi-explain') -> str:
  """`tfx template copy --model=taxi`, through TFX's own command line."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  subprocess.run([sys.executable, '-m', 'tfx.tools.cli.cli_main', 'template', 'copy',
                  '--model=taxi', f'--pipeline_name={pipeline_name}',
                  f'--destination_path={destination}'], check=True, capture_output=True)
  return destination


def write_taxi_rows(path: str, rows: int = 800, seed: int = 0) -> None:
  """Rows with every column of the template's data.csv and no missing values.

  Planted: a passenger tips more than 20 % of the fare in the evening (18-23 h)
  and on long trips, so trip_start_hour and trip_miles decide the label.
  """
  import pandas as pd  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  hour = rng.integers(0, 24, rows)
  miles = np.round(rng.gamma(2.0, 2.0, rows), 2)
  fare = np.round(3.25 + 2.25 * miles + rng.normal(0, 1, rows).clip(-2, 2), 2)
  big_tipper = ((hour >= 18) | (miles > 6.0)) ^ (rng.random(rows) < 0.05)
  tips = np.round(np.where(big_tipper, 0.3, 0.05) * fare, 2)
  frame = pd.DataFrame({
      'pickup_community_area': rng.integers(1, 78, rows),
      'fare': fare,
      'trip_start_month': rng.integers(1, 13, rows),
      'trip_start_hour': hour,
      'trip_start_day': rng.integers(1, 8, rows),
      'trip_start_timestamp': 1380000000 + rng.integers(0, 10 ** 7, rows),
      'pickup_latitude': np.round(41.85 + rng.normal(0, 0.05, rows), 6),
      'pickup_longitude': np.round(-87.65 + rng.normal(0, 0.05, rows), 6),
      'dropoff_latitude': np.round(41.85 + rng.normal(0, 0.05, rows), 6),
      'dropoff_longitude': np.round(-87.65 + rng.normal(0, 0.05, rows), 6),
      'trip_miles': miles,
      'pickup_census_tract': rng.integers(17031000000, 17031999999, rows),
      'dropoff_census_tract': rng.integers(17031000000, 17031999999, rows),
      'payment_type': rng.choice(['Cash', 'Credit Card', 'No Charge'], rows),
      'company': rng.choice(['Flash Cab', 'Taxi Affiliation Services', 'Dispatch Taxi'], rows),
      'trip_seconds': (miles * 240 + rng.integers(60, 600, rows)).astype(int),
      'dropoff_community_area': rng.integers(1, 78, rows),
      'tips': tips,
  }, columns=TAXI_COLUMNS)
  frame.to_csv(path, index=False)


def add_to_taxi_pipeline(pipeline_py: str, our_block: str) -> None:
  """What the template's TODOs ask a user to do, then our components before Pusher.

  Uncomments the template's StatisticsGen, SchemaGen, Transform, Trainer, Resolver,
  Evaluator and Pusher, inserts `our_block` before Pusher and gates Pusher on
  `explanation_validator`'s blessing (which ANDs Evaluator's).
  """
  with open(pipeline_py) as f:
    text = f.read()
  for component in ('statistics_gen', 'transform', 'trainer', 'model_resolver', 'evaluator',
                    'pusher'):
    text = text.replace(f'  # components.append({component})', f'  components.append({component})')
  # SchemaGen: the first of its two (commented) appends is the inferred-schema branch.
  text = text.replace('    # components.append(schema_gen)', '    components.append(schema_gen)', 1)
  marker = '  # Checks whether the model passed the validation steps and pushes'
  assert marker in text and "evaluator.outputs['blessing']," in text
  text = text.replace(marker, our_block + '\n' + marker)
  text = text.replace("          evaluator.outputs['blessing'],",
                      "          explanation_validator.outputs['blessing'],")
  with open(pipeline_py, 'w') as f:
    f.write(text)


# -- the mnist example (tfx/examples/mnist, a Keras MLP on 784 floats) ------------------------

def copy_mnist_modules(dest: str) -> Dict[str, str]:
  return copy_example_modules(
      'mnist', ('mnist_utils_native_keras.py', 'mnist_utils_native_keras_base.py'), dest)


def write_mnist_like_examples(data_dir: str, count: Optional[int] = None) -> str:
  """scikit-learn's 8x8 digits drawn at 28x28, as the mnist example's tf.Examples.

  `image_floats`: 784 floats in [-0.5, 0.5]; `image_class`: the digit.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = digits.images[:count] if count else digits.images
  large = np.kron(images, np.ones((3, 3)))                       # 24 x 24
  large = np.pad(large, ((0, 0), (2, 2), (2, 2)))                # 28 x 28
  floats = (large / 16.0 - 0.5).reshape(len(images), 784).astype(np.float32)
  os.makedirs(data_dir, exist_ok=True)
  path = os.path.join(data_dir, 'digits.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for pixels, label in zip(floats, digits.target[:len(images)]):
      example = tf.train.Example(features=tf.train.Features(feature={
          'image_floats': tf.train.Feature(float_list=tf.train.FloatList(value=pixels)),
          'image_class': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
      }))
      writer.write(example.SerializeToString())
  return path


# -- the imdb example (tfx/examples/imdb), on a generated corpus --------------------------------

IMDB_MODULE = 'imdb_utils_native_keras.py'
# Words that decide a review's label; every other word is drawn from a neutral vocabulary.
IMDB_POSITIVE_WORDS = reviews_data.POSITIVE_WORDS
IMDB_NEGATIVE_WORDS = reviews_data.NEGATIVE_WORDS
write_imdb_reviews = reviews_data.write_reviews


def run_imdb_pipeline(root: str, train_steps: int = 600, extra_components=None) -> TrainedExample:
  """TFX's imdb example on write_imdb_reviews' corpus with LocalDagRunner, its module copied
  unmodified; extra_components(*base components) are added after the Trainer."""
  # pylint: disable-next=g-import-not-at-top
  from tfx_explain.pipelines.reviews import pipeline as reviews_pipeline
  modules = copy_example_modules('imdb', [IMDB_MODULE], os.path.join(root, 'modules'))
  data_root = os.path.join(root, 'data')
  write_imdb_reviews(data_root)
  components = list(reviews_pipeline.base_components(data_root, modules[IMDB_MODULE],
                                                     train_steps))
  if extra_components:
    components += extra_components(*components)
  return run_example_pipeline(root, 'tfx-imdb-example', components, modules[IMDB_MODULE],
                              data_root)
