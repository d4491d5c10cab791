"""The same attributions from every DirectRunner mode: DoFns pickle, sampling keys on seeds."""

import os

import numpy as np
import pandas as pd
import pytest

import tfx_explain
from tfx_explain import (AttributionConfig, IntegratedGradients, KernelShap,
                         PermutationImportance, SmoothGrad)
from tfx_explain.attribution_gen import executor as executor_lib
from tfx_explain.types import Attributions
from tfx_explain.artifacts import tables


def run_with_args(artifacts, uri, beam_args):
  config = AttributionConfig(
      methods=[IntegratedGradients(steps=16), SmoothGrad(num_samples=8),
               KernelShap(num_samples=32, background_size=10), PermutationImportance(num_repeats=2)],
      splits=['eval'], label_key='species', slicing_specs=[[], ['island']], batch_size=16)
  output = Attributions()
  output.uri = uri
  os.makedirs(uri)
  inputs = {'examples': [artifacts.examples()], 'model': [artifacts.model()],
            'schema': [artifacts.schema()]}
  context = executor_lib.Executor.Context(beam_pipeline_args=beam_args,
                                          tmp_dir=os.path.join(uri, '..', 'tmp'))
  executor_lib.Executor(context).Do(inputs, {'attributions': [output]},
                                    {'config': config.to_json()})
  return output


@pytest.mark.slow
def test_multi_processing_matches_in_memory(penguin_artifacts, tmp_path):
  in_memory = run_with_args(penguin_artifacts, str(tmp_path / 'a'),
                            ['--direct_running_mode=in_memory', '--direct_num_workers=1'])
  multi = run_with_args(penguin_artifacts, str(tmp_path / 'b'),
                        ['--direct_running_mode=multi_processing', '--direct_num_workers=2'])
  a = tfx_explain.load_attributions(in_memory.uri)
  b = tfx_explain.load_attributions(multi.uri)
  assert len(a) == 4 * len(penguin_artifacts.splits['eval'])
  pd.testing.assert_frame_equal(a, b)
  ref_a = tables.load_reference(in_memory.uri)
  ref_b = tables.load_reference(multi.uri)
  assert ref_a.mean == ref_b.mean and ref_a.median == ref_b.median
  for name in ref_a.feature_names:
    np.testing.assert_array_equal(ref_a.background[name], ref_b.background[name])
