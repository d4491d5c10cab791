"""What the benchmarks share: the three models, data, artifacts on disk, timing, output.

Models (all built and trained here, in seconds, from bundled or generated data):
  penguin  the penguin pipeline's MLP (4 raw float + 2 string inputs, 16-16-3)
  wide     a wider tabular MLP: 100 float inputs, 128-128-2, on generated data
  digits   the digits pipeline's CNN on scikit-learn's bundled 8x8 digits

Each tabular model also has a "dense twin": the same layers behind one float
matrix input (string inputs enter as their one-hot codes), for the reference
libraries that only take one float tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


# -- machine, timing, output ----------------------------------------------------

def machine() -> Dict[str, object]:
  cpu = ''
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), '')
  except OSError:
    pass
  import apache_beam  # pylint: disable=g-import-not-at-top
  total_memory = None
  try:
    import psutil  # pylint: disable=g-import-not-at-top
    total_memory = psutil.virtual_memory().total / 2 ** 30
  except ImportError:
    pass
  return {'arch': platform.machine(), 'cores': os.cpu_count(), 'cpu': cpu,
          'memory_gib': round(total_memory, 1) if total_memory else None,
          'python': platform.python_version(), 'tensorflow': tf.__version__,
          'beam': apache_beam.__version__}


def machine_text(info: Dict[str, object]) -> str:
  return (f"{info['arch']}, {info['cores']} cores ({info['cpu'] or 'unknown CPU'}), "
          f"Python {info['python']}, TF {info['tensorflow']}, Beam {info['beam']}")


def timed(fn: Callable[[], object], repeats: int) -> float:
  return timed_alternating([fn], repeats)[0]


def timed_alternating(fns: Sequence[Callable[[], object]], repeats: int) -> List[float]:
  """Best-of-N seconds per function, runs interleaved so load on the machine hits all alike."""
  for fn in fns:
    fn()  # warm-up: tracing and first allocation
  best = [float('inf')] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      start = time.perf_counter()
      fn()
      best[i] = min(best[i], time.perf_counter() - start)
  return best


def write_results(out: str, figures: Dict[str, object], table: str) -> None:
  """<out>.json with every figure, <out-stem>.md with the table."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'w') as f:
    json.dump(figures, f, indent=1, default=_jsonable)
  with open(os.path.splitext(out)[0] + '.md', 'w') as f:
    f.write(table)
  print(table)


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def quiet_absl() -> None:
  """The TFX executor reads absl flags; outside absl.app they must count as parsed."""
  import absl.flags  # pylint: disable=g-import-not-at-top
  import absl.logging  # pylint: disable=g-import-not-at-top
  absl.flags.FLAGS.mark_as_parsed()
  absl.logging.set_verbosity(absl.logging.WARNING)


class PeakRss:
  """Samples the resident memory of a process and all its children; keeps the peak.

  Resident set sizes are summed over the tree, so multi-process runners count
  every worker. Sampling every `interval` seconds can miss a spike shorter than
  that; the runs measured here last seconds to minutes.
  """

  def __init__(self, pid: int, interval: float = 0.05):
    import psutil  # pylint: disable=g-import-not-at-top
    self._process = psutil.Process(pid)
    self._interval = interval
    self.peak = 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _sample(self) -> int:
    import psutil  # pylint: disable=g-import-not-at-top
    total = 0
    try:
      processes = [self._process] + self._process.children(recursive=True)
    except psutil.Error:
      return 0
    for process in processes:
      try:
        total += process.memory_info().rss
      except psutil.Error:
        pass
    return total

  def _run(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, self._sample())
      self._stop.wait(self._interval)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def run_measured(command: Sequence[str], env: Optional[Dict[str, str]] = None):
  """Runs a command; returns (wall seconds, peak RSS bytes of its process tree, stdout)."""
  start = time.perf_counter()
  process = subprocess.Popen(list(command), stdout=subprocess.PIPE, env=env, text=True)
  with PeakRss(process.pid) as peak:
    stdout, _ = process.communicate()
  seconds = time.perf_counter() - start
  if process.returncode:
    raise RuntimeError(f'{" ".join(command)} failed with exit code {process.returncode}')
  return seconds, peak.peak, stdout


def loglog_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
  """k in seconds ~ c * size^k, least squares on logs."""
  return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


# -- models -------------------------------------------------------------------------

@dataclasses.dataclass
class TabularModel:
  """A named-input tabular model with examples, and its dense twin for reference libraries."""
  name: str
  description: str
  model: tf_keras.Model                      # one named Input per feature
  features: Dict[str, np.ndarray]            # name -> [N] examples
  labels: np.ndarray
  float_names: List[str]
  string_names: List[str]
  twin: tf_keras.Model                       # one [N, D] float input, same layers
  to_twin: Callable[[Dict[str, np.ndarray]], np.ndarray]

  @property
  def input_names(self) -> List[str]:
    return self.float_names + self.string_names

  def take(self, rows) -> Dict[str, np.ndarray]:
    return {k: v[rows] for k, v in self.features.items()}


def penguin_csv() -> str:
  from tfx_explain.pipelines import penguin  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(penguin.__file__), 'data', 'penguins.csv')


def penguin_rows(n: Optional[int] = None, seed: int = 0) -> Dict[str, np.ndarray]:
  """The penguin table, or n rows drawn from it with jitter on the floats (plausible penguins)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from tfx_explain.pipelines.penguin import trainer_module  # pylint: disable=g-import-not-at-top
  frame = pd.read_csv(penguin_csv())
  columns = {name: frame[name].values.astype(np.float32) for name in trainer_module.FLOAT_FEATURES}
  columns.update({name: frame[name].values.astype(bytes)
                  for name in trainer_module.STRING_FEATURES})
  columns['species'] = frame['species'].values.astype(np.int64)
  if n is None:
    return columns
  rng = np.random.default_rng(seed)
  rows = rng.integers(0, len(frame), n)
  drawn = {name: values[rows] for name, values in columns.items()}
  for name in trainer_module.FLOAT_FEATURES:
    spread = 0.05 * columns[name].std()
    drawn[name] = (drawn[name] + rng.normal(0, spread, n)).astype(np.float32)
  return drawn


def penguin_model(epochs: int = 10, seed: int = 0) -> TabularModel:
  """The penguin pipeline's MLP, trained briefly on the bundled CSV."""
  from tfx_explain.pipelines.penguin import trainer_module  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(seed)
  columns = penguin_rows()
  stats = {name: tf.constant(columns[name]) for name in
           trainer_module.FLOAT_FEATURES + trainer_module.STRING_FEATURES}
  model = trainer_module.build_model(stats)
  # Eager training: tracing this model's train step costs ~20 s, far more than 10 epochs.
  model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), loss='sparse_categorical_crossentropy',
                run_eagerly=True)
  inputs = {name: columns[name].reshape(-1, 1) for name in
            trainer_module.FLOAT_FEATURES + trainer_module.STRING_FEATURES}
  model.fit(inputs, columns['species'], epochs=epochs, batch_size=32, verbose=0)
  floats, strings = list(trainer_module.FLOAT_FEATURES), list(trainer_module.STRING_FEATURES)
  lookups = [model.get_layer(f'{name}_lookup') for name in strings]
  widths = [int(layer.vocabulary_size()) for layer in lookups]

  # Twin: float columns, then each string input's one-hot code, through the same layers.
  dense_input = tf_keras.Input(shape=(len(floats) + sum(widths),))
  encoded = [model.get_layer(f'{name}_norm')(dense_input[:, i:i + 1])
             for i, name in enumerate(floats)]
  encoded.append(dense_input[:, len(floats):])
  x = tf_keras.layers.concatenate(encoded)
  for layer in [l for l in model.layers if isinstance(l, tf_keras.layers.Dense)]:
    x = layer(x)
  twin = tf_keras.Model(dense_input, x)

  def to_twin(features):
    parts = [np.stack([np.asarray(features[n], np.float32) for n in floats], axis=1)]
    for name, layer in zip(strings, lookups):
      parts.append(layer(tf.constant(np.asarray(features[name]).reshape(-1, 1))).numpy())
    return np.concatenate(parts, axis=1).astype(np.float32)

  features = {name: columns[name] for name in floats + strings}
  return TabularModel('penguin', 'penguin MLP (4 float + 2 string inputs, 16-16-3)', model,
                      features, columns['species'], floats, strings, twin, to_twin)


def wide_data(n: int, num_features: int = 100, seed: int = 0):
  from sklearn.datasets import make_classification  # pylint: disable=g-import-not-at-top
  x, y = make_classification(n_samples=n, n_features=num_features,
                             n_informative=min(20, num_features), n_redundant=0,
                             random_state=seed)
  x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
  return x, y.astype(np.int64)


def dense_mlp(num_features: int, hidden: Sequence[int], num_classes: int, x: np.ndarray,
              y: np.ndarray, name: str, description: str, epochs: int = 5,
              seed: int = 0) -> TabularModel:
  """An MLP with one named input per feature and its dense twin sharing the layers."""
  tf_keras.utils.set_random_seed(seed)
  names = [f'f{i:03d}' for i in range(num_features)]
  inputs = [tf_keras.Input(shape=(1,), name=n) for n in names]
  layers = [tf_keras.layers.Dense(units, activation='relu') for units in hidden]
  layers.append(tf_keras.layers.Dense(num_classes, activation='softmax'))
  h = tf_keras.layers.concatenate(inputs)
  dense_input = tf_keras.Input(shape=(num_features,))
  g = dense_input
  for layer in layers:
    h, g = layer(h), layer(g)
  model = tf_keras.Model(inputs, h)
  twin = tf_keras.Model(dense_input, g)
  twin.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss='sparse_categorical_crossentropy')
  twin.fit(x, y, epochs=epochs, batch_size=64, verbose=0)   # trains the shared layers
  features = {n: x[:, i] for i, n in enumerate(names)}

  def to_twin(columns):
    return np.stack([np.asarray(columns[n], np.float32) for n in names], axis=1)

  return TabularModel(name, description, model, features, y, names, [], twin, to_twin)


def wide_model(n: int = 4000, seed: int = 0) -> TabularModel:
  x, y = wide_data(n, 100, seed)
  return dense_mlp(100, (128, 128), 2, x, y, 'wide', 'wide MLP (100 float inputs, 128-128-2)')


def small_mlp(num_features: int = 12, n: int = 2000, seed: int = 0) -> TabularModel:
  """Few enough features that exact Shapley values can be enumerated."""
  x, y = wide_data(n, num_features, seed)
  return dense_mlp(num_features, (64, 64), 2, x, y, f'mlp{num_features}',
                   f'MLP ({num_features} float inputs, 64-64-2)')


def digits_model(epochs: int = 4, seed: int = 0):
  """The digits pipeline's CNN trained on scikit-learn's bundled digits: (model, images, labels)."""
  from tfx_explain.pipelines.digits import data, trainer_module  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(seed)
  images, labels = data.digits_arrays()
  images = images[..., None]
  model = trainer_module.build_model()
  model.fit(images, labels, epochs=epochs, batch_size=64, verbose=0)
  return model, images, labels


# -- artifacts on disk ------------------------------------------------------------------

def schema_for(columns: Dict[str, np.ndarray], value_counts: Optional[Dict[str, int]] = None):
  """A TFMD schema with one fixed-length feature per column."""
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  schema = schema_pb2.Schema()
  for name, values in columns.items():
    kind = values.dtype.kind
    feature = schema.feature.add(
        name=name, type=schema_pb2.FLOAT if kind == 'f' else
        schema_pb2.INT if kind in 'iu' else schema_pb2.BYTES)
    feature.shape.dim.add(size=(value_counts or {}).get(name, 1))
    feature.presence.min_fraction = 1.0
  return schema


def write_schema(directory: str, schema) -> str:
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, 'schema.pbtxt'), 'w') as f:
    f.write(text_format.MessageToString(schema))
  return directory


def write_split(examples_uri: str, split: str, columns: Dict[str, np.ndarray],
                shards: int = 1, chunk: int = 50000) -> List[str]:
  """Gzipped TFRecords of tf.Examples, as ExampleGen writes them, shard i holding rows i::shards.

  Columns are [N] (one value per example) or [N, K] (a fixed-length list).
  Encoding goes through tfx_bsl's C++ encoder so a million rows take seconds.
  """
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  from tfx_bsl.coders import example_coder  # pylint: disable=g-import-not-at-top
  directory = os.path.join(examples_uri, f'Split-{split}')
  os.makedirs(directory, exist_ok=True)
  encoder = example_coder.RecordBatchToExamplesEncoder()
  n = len(next(iter(columns.values())))
  paths = []
  for shard in range(shards):
    path = os.path.join(directory, f'data_tfrecord-{shard:05d}-of-{shards:05d}.gz')
    rows = np.arange(shard, n, shards)
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type='GZIP')) as writer:
      for start in range(0, len(rows), chunk):
        take = rows[start:start + chunk]
        arrays, names = [], []
        for name, values in columns.items():
          part = values[take]
          width = 1 if part.ndim == 1 else int(np.prod(part.shape[1:]))
          flat = part.reshape(-1)
          if flat.dtype.kind in 'SO':
            flat_array = pa.array(flat.tolist(), pa.binary())
          elif flat.dtype.kind == 'f':
            flat_array = pa.array(flat.astype(np.float32))
          else:
            flat_array = pa.array(flat.astype(np.int64))
          offsets = pa.array(np.arange(0, len(take) * width + 1, width, dtype=np.int32))
          arrays.append(pa.ListArray.from_arrays(offsets, flat_array))
          names.append(name)
        for record in encoder.encode(pa.RecordBatch.from_arrays(arrays, names)):
          writer.write(record)
    paths.append(path)
  return paths


def save_serving_model(model: tf_keras.Model, model_uri: str, schema, label_key: str,
                       image_shape: Optional[Sequence[int]] = None) -> str:
  """<model_uri>/Format-Serving as the Trainer writes it: the Keras model plus a
  serving_default signature on serialized tf.Examples."""
  from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top
  feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
  feature_spec.pop(label_key, None)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    parsed = tf.io.parse_example(serialized, feature_spec)
    if image_shape:
      [name] = list(feature_spec)
      return {'outputs': model(tf.reshape(parsed[name], [-1] + list(image_shape)))}
    return {'outputs': model({name: parsed[name] for name in model.input_names})}

  path = os.path.join(model_uri, 'Format-Serving')
  model.save(path, save_format='tf', signatures={'serving_default': serve})
  return model_uri


@dataclasses.dataclass
class Artifacts:
  """Examples, schema and model on disk, and the TFX artifacts pointing at them."""
  examples_uri: str
  schema_uri: str
  model_uri: str
  splits: List[str]

  def inputs(self):
    from tfx.types import artifact_utils, standard_artifacts  # pylint: disable=g-import-not-at-top
    examples = standard_artifacts.Examples()
    examples.uri = self.examples_uri
    examples.split_names = artifact_utils.encode_split_names(self.splits)
    model = standard_artifacts.Model()
    model.uri = self.model_uri
    schema = standard_artifacts.Schema()
    schema.uri = self.schema_uri
    return {'examples': [examples], 'model': [model], 'schema': [schema]}


def run_attribution_gen(artifacts: Artifacts, config, output_uri: str,
                        beam_args: Sequence[str] = ('--direct_num_workers=1',)) -> float:
  """AttributionGen's executor on the artifacts, as the TFX launcher calls it: wall seconds."""
  from tfx_explain.attribution_gen import executor as executor_lib  # pylint: disable=g-import-not-at-top
  from tfx_explain.types import Attributions  # pylint: disable=g-import-not-at-top
  output = Attributions()
  output.uri = output_uri
  os.makedirs(output_uri, exist_ok=True)
  context = executor_lib.Executor.Context(beam_pipeline_args=list(beam_args),
                                          tmp_dir=os.path.join(output_uri, '..', 'tmp'))
  start = time.perf_counter()
  executor_lib.Executor(context).Do(artifacts.inputs(), {'attributions': [output]},
                                    {'config': config.to_json()})
  return time.perf_counter() - start
