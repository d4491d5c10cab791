"""`tfx-explain explain` / `show`: the Attributions artifact outside a pipeline."""

import glob
import os

import numpy as np
import pandas as pd

import tfx_explain
from tfx_explain import cli


def _explain(penguin_artifacts, out, *extra):
  examples = penguin_artifacts.examples_uri
  return cli.main([
      'explain', '--model', penguin_artifacts.model_uri,
      '--examples', os.path.join(examples, 'Split-eval', '*'),
      '--reference-examples', os.path.join(examples, 'Split-train', '*'),
      # The penguin_run fixture's config, as flags.
      '--method', 'integrated_gradients:steps=32',
      '--method', 'kernel_shap:num_samples=32,background_size=20',
      '--label-key', 'species', '--slice', 'island', '--batch-size', '40',
      '--out', str(out), *extra])


def test_explain_writes_the_artifact_attribution_gen_writes(penguin_artifacts, penguin_run,
                                                            tmp_path, capsys):
  output, _ = penguin_run
  assert _explain(penguin_artifacts, tmp_path / 'out') == 0
  captured = capsys.readouterr()
  # The bar reached every example of the split, and the summary table was printed.
  examples = tfx_explain.load_summary(output.uri).examples
  assert f'{examples}/{examples} examples' in captured.err
  assert 'bill_length_mm' in captured.out and 'kernel_shap' in captured.out
  mine = tfx_explain.load_attributions(str(tmp_path / 'out'))
  theirs = tfx_explain.load_attributions(output.uri)
  pd.testing.assert_frame_equal(mine, theirs, check_exact=False, rtol=1e-9, atol=1e-12)
  ours = tfx_explain.load_summary(str(tmp_path / 'out'))
  assert ours.slice_names == tfx_explain.load_summary(output.uri).slice_names
  for name in ('report.html', 'reference.json', 'config.json'):
    assert os.path.exists(tmp_path / 'out' / name)
  assert glob.glob(str(tmp_path / 'out' / 'Split-eval' / 'attributions-*'))   # TFMA's records


def test_show_prints_the_summary_and_a_validation(penguin_run, tmp_path, capsys):
  from tfx_explain import CompletenessCheck, ValidationConfig
  from tests.test_explanation_validator_executor import run_validator
  output, _ = penguin_run
  assert cli.main(['show', output.uri, '--slice', 'island=Biscoe']) == 0
  text = capsys.readouterr().out
  summary = tfx_explain.load_summary(output.uri)
  value = summary.importance('kernel_shap', 'island=Biscoe')['bill_length_mm']
  assert 'island=Biscoe' in text and f'{value:.4g}' in text
  _, validation = run_validator(tmp_path, output.uri,
                                ValidationConfig(checks=[CompletenessCheck(
                                    max_relative_error_p95=1e-9)]))
  assert cli.main(['show', validation.uri]) == 0
  text = capsys.readouterr().out
  assert text.startswith('NOT BLESSED') and 'FAIL completeness' in text


def test_explain_bad_input_names_the_culprit(penguin_artifacts, tmp_path, capsys):
  assert cli.main(['explain', '--model', penguin_artifacts.model_uri, '--examples',
                   str(tmp_path / 'nothing-*.gz'), '--method', 'integrated_gradients',
                   '--out', str(tmp_path / 'o')]) == 2
  assert 'matches no files' in capsys.readouterr().err
  (tmp_path / 'taken').mkdir()
  (tmp_path / 'taken' / 'x').write_text('')
  assert _explain(penguin_artifacts, tmp_path / 'taken') == 2
  assert 'not empty' in capsys.readouterr().err
  examples = os.path.join(penguin_artifacts.examples_uri, 'Split-eval', '*')
  assert cli.main(['explain', '--model', penguin_artifacts.model_uri, '--examples', examples,
                   '--method', 'deep_magic', '--out', str(tmp_path / 'o')]) == 2
  assert "Unknown method 'deep_magic'" in capsys.readouterr().err
  assert cli.main(['explain', '--model', penguin_artifacts.model_uri, '--examples', examples,
                   '--method', 'kernel_shap:num_samples', '--out', str(tmp_path / 'o')]) == 2
  assert 'key=value' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'o')   # nothing half-written


def test_method_options_parse_to_method_configs():
  from tfx_explain.explain_cli import parse_method
  method = parse_method('kernel_shap:num_samples=512, background_size=50,sampler=kernel')
  assert method.num_samples == 512 and method.background_size == 50
  assert method.sampler == 'kernel'
  assert np.isclose(parse_method('integrated_gradients:steps=64').steps, 64)
