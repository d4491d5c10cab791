"""TFX's TF Decision Forests penguin example, its module copied unmodified from the installed tfx.

    CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform
      -> Trainer (penguin_utils_tfdf_experimental)
      raw examples + transform_graph + model -> AttributionGen (Tree SHAP, Kernel SHAP)
        -> ExplanationValidator -> Pusher

The example trains a gradient boosted trees classifier on the z-scored `*_xf`
features, attaches `model.tft_layer` and saves with `model.save`; its
inference is a custom op, so no gradient method can explain it. Tree SHAP
reads its trees; attributions must be named after the raw features, be exact
(complete to float precision) and gate Pusher.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import (AttributionConfig, AttributionSkewCheck, CompletenessCheck, KernelShap,
                         MethodAgreementCheck, TreeShap, ValidationConfig)
from tests import tfx_examples

pytest.importorskip('tensorflow_decision_forests')

METHODS = ['tree_shap', 'tree_shap_path', 'kernel_shap']


def _our_components(serving_dir, example_gen, statistics_gen, schema_gen, transform, trainer):
  del statistics_gen
  return tfx_examples.explain_validate_push(
      serving_dir, example_gen, schema_gen, transform, trainer,
      AttributionConfig(
          methods=[TreeShap(background_size=50),
                   TreeShap(algorithm='path_dependent', key='tree_shap_path'),
                   KernelShap(num_samples=14, background_size=20)],
          splits=['eval', 'train'], label_key=tfx_examples.PENGUIN_LABEL),
      ValidationConfig(checks=[
          CompletenessCheck(method='tree_shap', max_relative_error_p95=1e-6),
          CompletenessCheck(method='tree_shap_path', max_relative_error_p95=1e-6),
          MethodAgreementCheck(method_a='tree_shap', method_b='tree_shap_path',
                               min_spearman=0.5),
          AttributionSkewCheck(method='tree_shap', statistic='ndcg', threshold=0.8, k=4)]))


@pytest.fixture(scope='module')
def tfx_tfdf(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('tfx_tfdf'))
  serving_dir = os.path.join(root, 'serving_model')
  trained = tfx_examples.run_penguin_transform_trainer(
      root, train_steps=10, module=tfx_examples.PENGUIN_TFDF_MODULE,
      extra_components=lambda *base: _our_components(serving_dir, *base))
  return trained, serving_dir


def _latest(trained, type_name, node):
  from tfx_explain.review.notebook import PipelineStore  # pylint: disable=g-import-not-at-top
  return PipelineStore(trained.metadata_path).latest_uri(type_name, node)


@pytest.mark.slow
def test_module_is_tfx_own_and_trains_a_forest(tfx_tfdf):
  trained, _ = tfx_tfdf
  with open(trained.module_file, 'rb') as copied, open(tfx_examples.tfx_example_path(
      'penguin', tfx_examples.PENGUIN_TFDF_MODULE), 'rb') as original:
    assert copied.read() == original.read()
  from tfx_explain.engine.forest_model import forest_assets  # pylint: disable=g-import-not-at-top
  assert forest_assets(os.path.join(trained.model_uri, 'Format-Serving')) is not None


@pytest.mark.slow
def test_tree_shap_is_exact_over_the_raw_features(tfx_tfdf):
  trained, _ = tfx_tfdf
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  frame = tfx_explain.load_attributions(uri, 'eval')
  assert sorted(set(frame['method'])) == sorted(METHODS)
  assert not [c for c in frame.columns if c.endswith('_xf')]
  assert frame[tfx_examples.PENGUIN_FEATURES].notna().all().all()
  for method in ('tree_shap', 'tree_shap_path'):
    rows = frame[frame['method'] == method]
    # A boosted classifier: the margin (logit) its served probabilities are the softmax of.
    assert set(rows['output_kind']) == {'logit'}
    totals = rows[tfx_examples.PENGUIN_FEATURES].sum(axis=1)
    np.testing.assert_allclose(totals, rows['prediction'] - rows['baseline_prediction'],
                               atol=1e-9)


@pytest.mark.slow
def test_explained_function_is_the_served_one(tfx_tfdf):
  trained, _ = tfx_tfdf
  from tfx_explain.engine.forest_model import import_tfdf  # pylint: disable=g-import-not-at-top
  import_tfdf()   # registers the forest's inference ops before the SavedModel loads
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  frame = tfx_explain.load_attributions(uri, 'eval')
  records = tfx_examples.serialized_examples(trained.examples_uri, 'eval')
  loaded = tf.saved_model.load(os.path.join(trained.model_uri, 'Format-Serving'))
  served = loaded.signatures['serving_default'](examples=tf.constant(records))['outputs'].numpy()
  kernel = frame[frame['method'] == 'kernel_shap'].sort_values('example_index')
  index, target = kernel['example_index'].to_numpy(), kernel['target'].to_numpy()
  np.testing.assert_allclose(kernel['prediction'], served[index, target], atol=1e-5)
  np.testing.assert_array_equal(target, np.argmax(served[index], axis=1))
  tree = frame[frame['method'] == 'tree_shap'].sort_values('example_index')
  # Same targets; the margins rank the classes as the served probabilities do.
  np.testing.assert_array_equal(tree['target'].to_numpy(), target)


@pytest.mark.slow
def test_validator_blesses_and_pusher_pushes(tfx_tfdf):
  trained, serving_dir = tfx_tfdf
  blessing = _latest(trained, 'ModelBlessing', 'ExplanationValidator')
  assert os.path.exists(os.path.join(blessing, 'BLESSED')), os.listdir(blessing)
  assert os.listdir(serving_dir)


@pytest.mark.slow
def test_pruning_a_forest_says_it_is_not_pruned(tfx_tfdf):
  trained, _ = tfx_tfdf
  from tfx_explain.configurable import ConfigError  # pylint: disable=g-import-not-at-top
  from tfx_explain.pruning.training import load_base_model  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match='forests are not pruned'):
    load_base_model(trained.model_uri, trained.transform_graph_uri)
