"""The HTML reports render in a real browser (headless Chromium): no errors, not blank."""

import os
import shutil
import subprocess

import numpy as np
import pytest

import tfx_explain
from tfx_explain.artifacts import layout
from tfx_explain.artifacts import validation
from tfx_explain.review import reports
from tests import attributions_fixture

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--hide-scrollbars', '--window-size=1200,1600']


def render(path, tmp_path):
  """Screenshot and DOM of a local page; stderr for console errors."""
  if CHROMIUM is None:
    pytest.fail('chromium is not installed: `make test` installs Debian\'s chromium package '
                '(apt-get install chromium).')
  screenshot = tmp_path / 'shot.png'
  profile = tmp_path / 'profile'
  common = FLAGS + [f'--user-data-dir={profile}', '--enable-logging=stderr', '--v=0']
  shot = subprocess.run([CHROMIUM, *common, f'--screenshot={screenshot}', f'file://{path}'],
                        capture_output=True, text=True, timeout=120)
  dom = subprocess.run([CHROMIUM, *common, '--dump-dom', f'file://{path}'],
                       capture_output=True, text=True, timeout=120)
  return screenshot, dom.stdout, shot.stderr + dom.stderr


def assert_rendered(screenshot, console):
  import matplotlib.image
  assert screenshot.exists(), console[-2000:]
  pixels = matplotlib.image.imread(str(screenshot))
  assert pixels.shape[0] > 500 and pixels.shape[1] > 500
  # Not blank: a white page has no variance; a report has text, tables and a chart.
  assert float(np.std(pixels[..., :3])) > 0.05
  lowered = console.lower()
  for problem in ('uncaught', 'failed to load resource', 'err_file_not_found',
                  'refused to load'):
    assert problem not in lowered, console[-2000:]


def test_attributions_report_renders(penguin_run, tmp_path):
  output, _ = penguin_run
  path = os.path.join(output.uri, layout.REPORT_FILE)
  html = open(path, encoding='utf-8').read()
  assert '<script' not in html and 'http://' not in html and 'https://' not in html
  screenshot, dom, console = render(path, tmp_path)
  assert 'Feature attributions' in dom and 'bill_length_mm' in dom
  # Kernel SHAP's importances carry their standard errors, and its coalitions are shown.
  summary = tfx_explain.load_summary(output.uri, 'eval')
  ks = summary.overall.methods['kernel_shap']
  assert f"{ks.mean_standard_error['island']:.4g}" in dom and '±' in dom
  assert 'evaluations per example' in dom
  assert_rendered(screenshot, console)


def test_validation_report_renders_and_escapes(tmp_path):
  report = {
      'blessed': False, 'inputs': {'attributions': '/tmp/a<b>'},
      'checks': [
          {'check': 'feature_share_limit', 'passed': False, 'value': 0.4, 'threshold': 0.1,
           'comparison': '<=', 'slice': 'name=<img src=x onerror=alert(1)>', 'method': 'kernel_shap',
           'feature': '<b>sex</b>', 'message': 'share of "sex" & more'},
          {'check': 'completeness', 'passed': True, 'value': 0.01, 'threshold': 0.05,
           'comparison': '<=', 'slice': 'Overall', 'method': 'integrated_gradients',
           'feature': None, 'message': 'p95 relative completeness error'}]}
  validation.write_validation(str(tmp_path), report, reports.validation_html(report))
  path = tmp_path / validation.REPORT_FILE
  screenshot, dom, console = render(path, tmp_path)
  assert 'NOT BLESSED' in dom
  assert '<img src="x"' not in dom and '&lt;b&gt;sex&lt;/b&gt;' in dom
  assert_rendered(screenshot, console)


def test_image_report_embeds_galleries(tmp_path):
  uri = attributions_fixture.write_attributions(
      tmp_path / 'attributions', {'grad_cam': {'image': 1.0, 'image/top_left': 0.4}},
      slices=('Overall',), value_kind='activation_map')
  summary = tfx_explain.load_summary(uri)
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  import io
  figure, ax = plt.subplots()
  ax.imshow(np.random.default_rng(0).uniform(size=(8, 8)))
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png')
  html = tfx_explain.review.reports.attributions_report({'eval': summary},
                                                 {'eval': {'grad_cam': buffer.getvalue()}})
  assert html.count('data:image/png;base64,') == 2


def _bars(dom):
  """(interval left, interval right, threshold x) of each bar in the rendered DOM, in order."""
  import re
  bars = []
  for svg in re.findall(r'<svg class="bar".*?</svg>', dom, flags=re.S):
    rect = re.search(r'class="interval" x="([\d.]+)" y="5" width="([\d.]+)"', svg)
    threshold = re.search(r'class="threshold" x1="([\d.]+)"', svg)
    bars.append((float(rect.group(1)) if rect else None,
                 float(rect.group(1)) + float(rect.group(2)) if rect else None,
                 float(threshold.group(1)) if threshold else None))
  return bars


def test_validation_report_draws_each_interval_against_its_threshold(tmp_path):
  from tfx_explain.validation.checks import CheckResult
  results = [
      # Drift on a slice: the whole interval below the 0.9 line fails.
      CheckResult('attribution_drift', False, 0.7, 0.9, '>=', 'island=Dream', 'kernel_shap',
                  message='nDCG@5', lower=0.6, upper=0.8, confidence=0.95,
                  decided_on='upper', examples=41, stability='stable over 20 estimator draws'),
      # Overall: the interval straddles the line, its upper bound is above: passes.
      CheckResult('attribution_drift', True, 0.88, 0.9, '>=', 'Overall', 'kernel_shap',
                  message='nDCG@5', lower=0.82, upper=0.95, confidence=0.95,
                  decided_on='upper', examples=115, stability='flips in 3 of 20 estimator draws'),
      # A distance far above its line: fails on the lower bound.
      CheckResult('attribution_skew', False, 0.45, 0.1, '<=', 'Overall', 'integrated_gradients',
                  'body_mass_g', 'W1', lower=0.35, upper=0.57, confidence=0.95,
                  decided_on='lower', examples=111),
      CheckResult('completeness', True, 0.01, 0.05, '<=', 'Overall', 'integrated_gradients'),
  ]
  report = {'blessed': False, 'inputs': {}, 'checks': [r.to_dict() for r in results]}
  validation.write_validation(str(tmp_path), report, reports.validation_html(report))
  screenshot, dom, console = render(tmp_path / validation.REPORT_FILE, tmp_path)
  bars = _bars(dom)
  assert len(bars) == 4
  (fail_left, fail_right, fail_line), (pass_left, pass_right, pass_line), \
      (skew_left, _, skew_line), (no_interval, _, completeness_line) = bars
  assert fail_right < fail_line                 # below the line
  assert pass_left < pass_line < pass_right     # straddles it
  assert skew_line < skew_left                  # above it
  assert no_interval is None and completeness_line is not None
  assert '[0.6, 0.8] (95%)' in dom and 'on the upper bound' in dom
  assert 'flips in 3 of 20 estimator draws' in dom and '>41<' in dom
  assert_rendered(screenshot, console)
  # The bars are drawn: the failing interval's red fill is on screen.
  import matplotlib.image
  pixels = matplotlib.image.imread(str(screenshot))[..., :3]
  reddish = (pixels[..., 0] > 0.75) & (pixels[..., 1] < 0.75) & (pixels[..., 2] < 0.75) & (
      pixels[..., 0] - pixels[..., 1] > 0.2)
  assert reddish.sum() > 50
