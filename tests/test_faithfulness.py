"""FaithfulnessCheck: deletion/insertion curves against closed forms and on the penguin model."""

import itertools
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfx_explain import FaithfulnessCheck, ValidationConfig
from tfx_explain.artifacts import layout, tables
from tfx_explain.configurable import ConfigError
from tfx_explain.engine.adapters import CallableModelFunction
from tfx_explain.engine.reference import ReferenceStats
from tfx_explain.validation import faithfulness
from tfx_explain.validation.context import AttributionsView, CheckContext
from tests import attributions_fixture

NAMES = ['x0', 'x1', 'x2', 'x3', 'x4']
WEIGHTS = np.array([2.0, -1.5, 0.7, 3.0, -0.4])
OFFSET = 0.25


def linear_model(names=NAMES, weights=WEIGHTS):
  return CallableModelFunction(
      lambda x: tf.add_n([float(w) * x[n] for n, w in zip(names, weights)]) + OFFSET, names)


def linear_case(n=8, seed=0):
  """Examples, baseline and exact IG attributions w_i (x_i - b_i) of the linear model."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, len(NAMES)))
  b = rng.normal(size=len(NAMES))
  features = {name: x[:, i].astype(np.float32) for i, name in enumerate(NAMES)}
  replacement = {name: np.full(n, b[i], np.float32) for i, name in enumerate(NAMES)}
  attributions = WEIGHTS * (x - b)
  f_x = x @ WEIGHTS + OFFSET
  return features, replacement, attributions, f_x


def test_curves_of_a_linear_model_are_cumulative_sums_of_exact_attributions():
  features, replacement, attributions, f_x = linear_case()
  n = len(f_x)
  order = faithfulness.attribution_order(attributions)
  curves = faithfulness.order_curves(linear_model(), features, replacement, NAMES,
                                     order[:, None], np.zeros(n), ('deletion', 'insertion'))
  sorted_attr = np.take_along_axis(attributions, order, axis=1)
  partial = np.concatenate([np.zeros((n, 1)), np.cumsum(sorted_attr, axis=1)], axis=1)
  f_b = f_x - attributions.sum(axis=1)
  # Deletion after k steps: f(x) minus the k largest attributions; insertion: f(b) plus them.
  np.testing.assert_allclose(curves['deletion'][:, 0], f_x[:, None] - partial, atol=1e-4)
  np.testing.assert_allclose(curves['insertion'][:, 0], f_b[:, None] + partial, atol=1e-4)
  # Signed order: the first feature removed has the largest attribution toward the output.
  assert (np.diff(sorted_attr, axis=1) <= 0).all()


def test_features_outside_the_masked_set_keep_the_example_value():
  features, replacement, attributions, f_x = linear_case()
  masked = NAMES[:3]
  order = faithfulness.attribution_order(attributions[:, :3])
  [deletion] = faithfulness.order_curves(linear_model(), features, replacement, masked,
                                         order[:, None], np.zeros(len(f_x))).values()
  end = f_x - attributions[:, :3].sum(axis=1)   # x3, x4 never replaced
  np.testing.assert_allclose(deletion[:, 0, -1], end, atol=1e-4)


def test_random_order_mean_curve_matches_its_expectation():
  features, replacement, attributions, f_x = linear_case(n=6, seed=1)
  k, orders = len(NAMES), 400
  measured = faithfulness.faithfulness_curves(linear_model(), features, attributions, NAMES,
                                              replacement, np.zeros(len(f_x)), ('deletion',),
                                              num_random_orders=orders, seed=3)['deletion']
  steps = np.arange(k + 1)
  # E[sum of k of K attributions drawn without replacement] = k/K * total.
  expected = f_x[:, None] - steps[None] / k * attributions.sum(axis=1, keepdims=True)
  # Its variance: k (K - k) / (K - 1) * population variance; over R orders, divided by R.
  variance = (steps * (k - steps) / (k - 1))[None] * attributions.var(axis=1, keepdims=True)
  standard_error = np.sqrt(variance / orders)
  assert (np.abs(measured.random_mean - expected) <= 4 * standard_error + 1e-4).all()
  # The end points are the same for every order.
  np.testing.assert_allclose(measured.random[:, :, 0], f_x[:, None].repeat(orders, 1), atol=1e-4)


def test_random_orders_are_seeded_permutations():
  a = faithfulness.random_orders(5, 7, 3, seed=2)
  assert a.shape == (5, 3, 7)
  np.testing.assert_array_equal(np.sort(a, axis=2), np.broadcast_to(np.arange(7), a.shape))
  np.testing.assert_array_equal(a, faithfulness.random_orders(5, 7, 3, seed=2))
  assert not np.array_equal(a, faithfulness.random_orders(5, 7, 3, seed=3))


def test_exact_attribution_order_beats_every_permutation():
  """On a linear model no order of the 5 features has a larger gain over random than IG's."""
  features, replacement, attributions, f_x = linear_case(n=10, seed=2)
  n = len(f_x)
  model = linear_model()
  measured = faithfulness.faithfulness_curves(model, features, attributions, NAMES, replacement,
                                              np.zeros(n), ('deletion', 'insertion'),
                                              num_random_orders=8, seed=0)
  every = np.array(list(itertools.permutations(range(len(NAMES)))))   # 120 orders
  all_orders = faithfulness.order_curves(model, features, replacement, NAMES,
                                         np.broadcast_to(every, (n,) + every.shape), np.zeros(n),
                                         ('deletion', 'insertion'))
  for curve, ours in measured.items():
    # Each permutation against the same random reference (so the same scale).
    others = faithfulness.OrderCurves(curve, all_orders[curve].reshape(-1, len(NAMES) + 1),
                                      np.repeat(ours.random, len(every), axis=0))
    best = others.raw_gain().reshape(n, len(every)).max(axis=1)
    np.testing.assert_allclose(ours.raw_gain(), best, atol=1e-5)
    assert (ours.gain() >= 0).all() and (ours.gain() <= 1).all()


def test_gains_are_bounded_and_flat_curves_are_left_out():
  rng = np.random.default_rng(0)
  random = rng.normal(size=(20, 4, 6))
  attribution = rng.normal(size=(20, 6))
  attribution[3] = random[3] = 0.5           # flat: no information about order
  curves = faithfulness.OrderCurves('insertion', attribution, random)
  gain = curves.gain()
  assert np.isnan(gain[3]) and np.isfinite(np.delete(gain, 3)).all()
  assert (np.abs(np.delete(gain, 3)) <= 1.0).all()


def test_noisy_imputation_adds_seeded_noise_scaled_by_the_reference_spread():
  rng = np.random.default_rng(0)
  pool = {'a': rng.normal(3.0, 2.0, 500).astype(np.float32),
          'colour': np.array([b'red', b'blue', b'green', b'blue'] * 125, dtype=object)}
  reference = ReferenceStats.from_features(pool, {'a': tf.float32, 'colour': tf.string},
                                           background_size=100)
  plain = faithfulness.replacement_values(reference, ['a', 'colour'], 4000, 'mean')
  assert (plain['a'] == reference.mean['a']).all() and (plain['colour'] == b'blue').all()
  noisy = faithfulness.replacement_values(reference, ['a', 'colour'], 4000, 'mean', 'noisy',
                                          noise_scale=0.5, seed=1)
  assert np.mean(noisy['a']) == pytest.approx(reference.mean['a'], abs=0.1)
  assert np.std(noisy['a']) == pytest.approx(0.5 * reference.std['a'], rel=0.05)
  # Categories come from background rows, in about their background frequencies.
  assert set(noisy['colour']) == set(reference.background['colour'])
  share = np.mean(noisy['colour'] == b'blue')
  assert share == pytest.approx(np.mean(reference.background['colour'] == b'blue'), abs=0.04)
  again = faithfulness.replacement_values(reference, ['a', 'colour'], 4000, 'mean', 'noisy',
                                          noise_scale=0.5, seed=1)
  np.testing.assert_array_equal(noisy['a'], again['a'])


def test_bootstrap_interval_is_seeded_and_about_normal_width():
  values = np.random.default_rng(4).normal(0.3, 0.2, 400)
  low, high = faithfulness.bootstrap_interval(values, 0.95, seed=0)
  assert low < values.mean() < high
  assert (low, high) == faithfulness.bootstrap_interval(values, 0.95, seed=0)
  normal_width = 2 * 1.96 * values.std() / np.sqrt(len(values))
  assert high - low == pytest.approx(normal_width, rel=0.15)


# -- the check on the penguin model ---------------------------------------------------
# Measured on three builds of the penguin fixture (111 eval examples, 16 random
# orders), mean gain [95% bootstrap interval]. The model and IG are reproducible;
# the reference background sample is not, so Kernel SHAP moves a little:
#   integrated_gradients  deletion 0.397 [0.371, 0.423]  insertion 0.160 [0.142, 0.179]
#   kernel_shap           deletion 0.294..0.332, lower 0.257..0.295
#                         insertion 0.168..0.175, lower 0.152..0.159
#   shuffled (10-20 seeds per build, both methods, both curves)
#                         means -0.046..0.048, lower bounds <= 0.018, upper <= 0.078
# Shuffled attributions are a random order, so their expected gain is 0 and the
# bootstrap standard error on 111 examples is about 0.016: to pass MARGIN their
# mean would have to be ~0.11, about 7 standard errors above 0. The real
# attributions' lower bounds clear it by at least 0.06 (about 4 standard errors).
MARGIN = 0.08


def model_path(penguin_artifacts):
  return os.path.join(penguin_artifacts.model_uri, 'Format-Serving')


def penguin_check(penguin_artifacts, **overrides):
  # The examples are found through the files the attributions record.
  settings = dict(curve='both', min_gain=MARGIN, num_examples=None)
  settings.update(overrides)
  return FaithfulnessCheck(**settings)


def run(check, uri, penguin_artifacts):
  context = CheckContext(AttributionsView(uri, 'eval'), None, model_path(penguin_artifacts))
  check.validate(context)
  return check.run(context)


def rewritten_copy(uri, destination, rewrite):
  """A copy of an Attributions artifact whose per-example frames went through `rewrite`."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  shutil.copytree(uri, destination)
  folder = os.path.join(layout.split_uri(destination, 'eval'), layout.PER_EXAMPLE_DIR)
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    frame = pq.read_table(path).to_pandas()
    features = tables.feature_columns(frame)
    schema = tables.per_example_schema(
        features, standard_errors=any(c.startswith(tables.STANDARD_ERROR_PREFIX)
                                      for c in frame.columns))
    assert pq.read_schema(path) == schema
    pq.write_table(pa.Table.from_pandas(rewrite(frame, features), schema=schema,
                                        preserve_index=False), path)
  return destination


def shuffle_across_features(seed):
  def rewrite(frame, features):
    rng = np.random.default_rng(seed)
    values = frame[features].to_numpy(np.float64)
    for row in values:
      attributed = np.flatnonzero(np.isfinite(row))
      row[attributed] = row[rng.permutation(attributed)]
    frame[features] = values
    return frame
  return rewrite


def test_ig_and_kernel_shap_beat_random_order_on_penguin(penguin_artifacts, penguin_run):
  output, _ = penguin_run
  eval_size = len(penguin_artifacts.splits['eval'])
  for method in ('integrated_gradients', 'kernel_shap'):
    results = run(penguin_check(penguin_artifacts, method=method), output.uri, penguin_artifacts)
    assert [r.check for r in results] == ['faithfulness_deletion', 'faithfulness_insertion']
    for result in results:
      assert result.passed and result.lower >= MARGIN, (method, result)
      assert result.lower <= result.value <= result.upper
      assert result.decided_on == 'lower' and result.confidence == 0.95
      assert result.examples == eval_size and result.method == method
      # Both attribute every raw input, the strings island and sex included.
      assert sorted(result.details['features']) == sorted(
          ['bill_depth_mm', 'bill_length_mm', 'body_mass_g', 'flipper_length_mm', 'island',
           'sex'])
      ours, chance = result.details['attribution_order'], result.details['random_order']
      assert len(ours) == len(chance) == 7 and ours[0] == chance[0] and ours[-1] == chance[-1]
      area = faithfulness.curve_auc(np.array([ours, chance]))
      better = area[1] - area[0] if result.details['curve'] == 'deletion' else area[0] - area[1]
      assert better > 0


def test_attributions_shuffled_across_features_fail(penguin_artifacts, penguin_run, tmp_path):
  output, _ = penguin_run
  shuffled = rewritten_copy(output.uri, str(tmp_path / 'shuffled'), shuffle_across_features(0))
  for method in ('integrated_gradients', 'kernel_shap'):
    for result in run(penguin_check(penguin_artifacts, method=method), shuffled,
                      penguin_artifacts):
      assert not result.passed and result.lower < MARGIN, (method, result)
      assert abs(result.value) < MARGIN


def test_examples_are_read_at_their_index_and_slices_judged(penguin_artifacts, penguin_run):
  output, _ = penguin_run
  frame = tables.load_attributions(output.uri, 'eval', 'kernel_shap')
  context = CheckContext(AttributionsView(output.uri, 'eval'), None,
                         model_path(penguin_artifacts))
  model = context.load_model()
  features, found = faithfulness.read_examples(
      faithfulness.split_files(penguin_artifacts.examples_uri, 'eval'),
      frame['example_index'].to_numpy(), model)
  np.testing.assert_array_equal(found, frame['example_index'].to_numpy())
  islands = [f'island={v.decode()}' for v in features['island']]
  assert islands == [list(s)[0] for s in frame['slices']]

  check = penguin_check(penguin_artifacts, method='kernel_shap', curve='deletion',
                        per_slice=True, min_slice_examples=30)
  results = {r.slice: r for r in check.run(context)}
  assert set(results) == {'Overall', 'island=Biscoe', 'island=Dream', 'island=Torgersen'}
  counts = {s: sum(f'{s}' in list(v) for v in frame['slices']) for s in results}
  small = [s for s, c in counts.items() if s != 'Overall' and c < 30]
  assert small == ['island=Torgersen']
  assert results['island=Torgersen'].passed and 'not judged' in results['island=Torgersen'].message
  assert results['island=Biscoe'].examples == counts['island=Biscoe']
  assert all(r.passed for r in results.values())


def test_skipped_features_are_never_masked_and_noisy_imputation_runs(penguin_artifacts,
                                                                     penguin_run, tmp_path):
  output, _ = penguin_run

  def skip_strings(frame, features):
    ig = frame['method'] == 'integrated_gradients'
    frame.loc[ig, ['island', 'sex']] = np.nan
    return frame
  copy = rewritten_copy(output.uri, str(tmp_path / 'skipped'), skip_strings)
  [result] = run(penguin_check(penguin_artifacts, curve='deletion', imputation='noisy',
                               num_examples=60, selection='random'), copy, penguin_artifacts)
  assert result.details['features'] == ['bill_depth_mm', 'bill_length_mm', 'body_mass_g',
                                        'flipper_length_mm']
  assert len(result.details['attribution_order']) == 5 and result.examples == 60
  assert result.passed and result.details['imputation'] == 'noisy'


# -- config -------------------------------------------------------------------------
@pytest.mark.parametrize('settings, message', [
    (dict(curve='sideways'), "curve must be one of"),
    (dict(min_gain=1.5), r'min_gain must be in \[-1.0, 1.0\]'),
    (dict(num_examples=1), 'num_examples must be an integer >= 2'),
    (dict(num_random_orders=0), 'num_random_orders must be an integer >= 1'),
    (dict(imputation='mean'), 'imputation must be one of'),
    (dict(selection='last'), 'selection must be one of'),
    (dict(confidence=1.0), 'confidence must be in'),
    (dict(noise_scale=-1.0), 'noise_scale'),
    (dict(seed=-1), 'seed must be an integer'),
    (dict(min_slice_examples=-1), 'min_slice_examples'),
    (dict(baseline='average'), 'baseline must be one of'),
    (dict(method=''), 'method must be a method name'),
    (dict(examples_uri=''), 'examples_uri must be a path'),
])
def test_bad_parameters_are_named(settings, message):
  with pytest.raises(ConfigError, match=message):
    FaithfulnessCheck(**settings)


def test_validate_names_what_is_missing(tmp_path):
  uri = attributions_fixture.write_attributions(
      str(tmp_path / 'a'), {'integrated_gradients': {'age': 0.5, 'income': 0.3}})
  view = AttributionsView(uri, 'eval')
  with pytest.raises(ConfigError, match="method 'kernel_shap' is not in the attributions"):
    FaithfulnessCheck(method='kernel_shap').validate(CheckContext(view, None, '/model'))
  with pytest.raises(ConfigError, match='needs the model'):
    FaithfulnessCheck(examples_uri='/examples').validate(CheckContext(view))
  with pytest.raises(ConfigError, match='examples_uri'):
    FaithfulnessCheck().validate(CheckContext(view, None, '/model'))


def test_examples_uri_without_the_split_is_refused(tmp_path):
  with pytest.raises(ConfigError, match="no files of split 'eval'"):
    faithfulness.split_files(str(tmp_path), 'eval')


def test_json_round_trip_through_validation_config():
  config = ValidationConfig(checks=[
      FaithfulnessCheck(method='kernel_shap', curve='both', min_gain=0.1, num_examples=50,
                        selection='random', num_random_orders=8, imputation='noisy',
                        noise_scale=0.1, baseline={'sex': 'female'}, confidence=0.9, seed=3,
                        per_slice=True, min_slice_examples=20, examples_uri='/data/examples')])
  text = config.to_json()
  assert ValidationConfig.from_json(text) == config
  # A fresh process that imports only ValidationConfig knows the check too.
  script = ('import sys; from tfx_explain.validation.config import ValidationConfig; '
            'print(type(ValidationConfig.from_json(sys.stdin.read()).checks[0]).__name__)')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  out = subprocess.run([sys.executable, '-c', script], input=text, capture_output=True,
                       text=True, env=env, check=True)
  assert out.stdout.strip() == 'FaithfulnessCheck'


def test_a_restored_model_behind_its_transform_layer(tmp_path):
  """TFX-style: tf.saved_model.save with a Transform layer; exact IG on raw features."""
  from tests import test_restored_models as restored
  keras_model = restored._linear_model(1, names=['a_xf', 'b_xf'])  # pylint: disable=protected-access
  path = restored._save(keras_model, str(tmp_path / 'm'), transform=restored.ZScore())  # pylint: disable=protected-access
  output = restored._run_attribution_gen(tmp_path, path, restored._rows())  # pylint: disable=protected-access
  context = CheckContext(AttributionsView(output.uri, 'eval'), None, path)
  check = FaithfulnessCheck(curve='deletion', min_gain=0.0, num_random_orders=4,
                            examples_uri=str(tmp_path / 'examples'))
  check.validate(context)
  [result] = check.run(context)
  # Linear in the raw features: the deletion curve is f(x) minus the cumulative sums of the
  # sorted exact attributions, averaged over examples.
  frame = tables.load_attributions(output.uri, 'eval', 'integrated_gradients')
  values = -np.sort(-frame[['a', 'b']].to_numpy(), axis=1)
  partial = np.concatenate([np.zeros((len(frame), 1)), np.cumsum(values, axis=1)], axis=1)
  expected = (frame['prediction'].to_numpy()[:, None] - partial).mean(axis=0)
  np.testing.assert_allclose(result.details['attribution_order'], expected, atol=1e-4)
  assert result.details['features'] == ['a', 'b'] and result.examples == len(frame)
  assert result.passed and result.lower >= 0.0
