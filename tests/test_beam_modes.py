"""The same attributions from every DirectRunner mode: DoFns pickle, sampling keys on seeds."""

import os

import numpy as np
import pandas as pd
import pytest

import tfx_explain
from tfx_explain import (AttributionConfig, IntegratedGradients, KernelShap, Lime,
                         PermutationImportance, SampledShapley, SmoothGrad)
from tfx_explain.artifacts import tables
from tfx_explain.attribution_gen import executor as executor_lib
from tfx_explain.types import Attributions


# Every sampling method with its own seed (Kernel SHAP sampled: 40 < 2^6 - 2 coalitions), and
# batches of 16 so that two workers share the split.
CONFIG = AttributionConfig(
    methods=[IntegratedGradients(steps=16),
             KernelShap(num_samples=40, background_size=10, seed=3),
             SampledShapley(num_permutations=6, seed=4),
             Lime(num_samples=60, seed=5),
             SmoothGrad(num_samples=6, noise_level=0.2, seed=6),
             PermutationImportance(num_repeats=2, seed=7)],
    splits=['eval'], label_key='species', slicing_specs=[[], ['island']], batch_size=16)


def run_with_args(artifacts, uri, beam_args):
  output = Attributions()
  output.uri = uri
  os.makedirs(uri)
  inputs = {'examples': [artifacts.examples()], 'model': [artifacts.model()],
            'schema': [artifacts.schema()]}
  context = executor_lib.Executor.Context(beam_pipeline_args=beam_args,
                                          tmp_dir=os.path.join(uri, '..', 'tmp'))
  executor_lib.Executor(context).Do(inputs, {'attributions': [output]},
                                    {'config': CONFIG.to_json()})
  return output


@pytest.mark.slow
def test_reruns_and_multi_processing_give_the_same_attributions(penguin_artifacts, tmp_path):
  runs = [run_with_args(penguin_artifacts, str(tmp_path / name), args) for name, args in (
      ('a', ['--direct_running_mode=in_memory', '--direct_num_workers=1']),
      ('b', ['--direct_running_mode=in_memory', '--direct_num_workers=1']),
      ('c', ['--direct_running_mode=multi_processing', '--direct_num_workers=2']))]
  frames = [tfx_explain.load_attributions(run.uri) for run in runs]
  assert sorted(set(frames[0]['method'])) == sorted(m.label for m in CONFIG.methods)
  assert len(frames[0]) == len(CONFIG.methods) * len(penguin_artifacts.splits['eval'])
  pd.testing.assert_frame_equal(frames[0], frames[1])   # a re-run
  pd.testing.assert_frame_equal(frames[0], frames[2])   # two worker processes
  ref_a, ref_c = (tables.load_reference(runs[k].uri) for k in (0, 2))
  assert ref_a.mean == ref_c.mean and ref_a.median == ref_c.median
  for name in ref_a.feature_names:
    np.testing.assert_array_equal(ref_a.background[name], ref_c.background[name])
