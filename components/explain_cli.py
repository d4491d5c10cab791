"""`tfx-explain explain` and `tfx-explain show`: the suite on a model, outside a pipeline.

    tfx-explain explain --model serving_model_dir --examples 'data/eval/*.gz' \
        --method integrated_gradients --method kernel_shap:num_samples=512 \
        --label-key species --slice island --out attributions/
    tfx-explain show attributions/

`explain` writes the same Attributions artifact layout as AttributionGen, with
the same checks and Beam pipeline (tfx_explain.attribution_gen.executor
.write_attributions), on any runner (`--beam-arg=--runner=...`). `show`
prints an artifact's summary (or a validation's checks).
"""

from __future__ import annotations

import ast
import json
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional

EXPLAINED_SPLIT = 'eval'
REFERENCE_SPLIT = 'reference'


def parse_method(text: str):
  """'kernel_shap' or 'kernel_shap:num_samples=512,background_size=50' -> a method."""
  from tfx_explain.engine import base  # pylint: disable=g-import-not-at-top
  name, _, options = text.partition(':')
  config: Dict[str, Any] = {base.AttributionMethod.kind_key: name.strip()}
  for option in filter(None, (o.strip() for o in options.split(','))):
    key, equals, value = option.partition('=')
    if not equals:
      raise base.ConfigError(f'--method {text!r}: options are key=value, got {option!r}.')
    try:
      config[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      config[key.strip()] = value.strip()   # a bare word: a string option
  return base.method_from_json_dict(config)


def _glob(pattern: str, what: str) -> List[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(f for f in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(f))
  if not files:
    raise FileNotFoundError(f'{what} {pattern!r} matches no files.')
  return files


class ProgressBar:
  """A one-line bar on stderr, redrawn from a thread while Beam runs."""

  def __init__(self, total: int, stream=None, width: int = 30, interval: float = 0.5):
    self.total = max(total, 1)
    self.stream = stream or sys.stderr
    self.width = width
    self.interval = interval
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._started = time.time()

  def line(self, done: int) -> str:
    done = min(done, self.total)
    filled = int(self.width * done / self.total)
    seconds = max(time.time() - self._started, 1e-9)
    return (f'\rexplaining [{"#" * filled}{"." * (self.width - filled)}] {done}/{self.total} '
            f'examples, {done / seconds:.0f}/s')

  def _run(self):
    from tfx_explain.beam.attribution import Progress  # pylint: disable=g-import-not-at-top
    while not self._stop.wait(self.interval):
      self.stream.write(self.line(Progress.explained))
      self.stream.flush()

  def __enter__(self):
    from tfx_explain.beam.attribution import Progress  # pylint: disable=g-import-not-at-top
    Progress.reset()
    self._thread.start()
    return self

  def __exit__(self, *exc):
    from tfx_explain.beam.attribution import Progress  # pylint: disable=g-import-not-at-top
    self._stop.set()
    self._thread.join()
    self.stream.write(self.line(Progress.explained) + '\n')
    self.stream.flush()
    return False


def build_config(args):
  from tfx_explain.config import AttributionConfig  # pylint: disable=g-import-not-at-top
  if args.config:
    with open(args.config) as f:
      data = json.load(f)
    data['splits'] = [EXPLAINED_SPLIT]
    data['baseline_split'] = REFERENCE_SPLIT
    return AttributionConfig.from_json(json.dumps(data))
  if not args.method:
    raise SystemExit('tfx-explain explain: give --method (repeatable) or --config.')
  return AttributionConfig(
      methods=[parse_method(m) for m in args.method], splits=[EXPLAINED_SPLIT],
      label_key=args.label_key, target=int(args.target) if args.target.isdigit() else args.target,
      slicing_specs=[[]] + [[s] for s in args.slice], max_examples_per_split=args.max_examples,
      baseline_split=REFERENCE_SPLIT, background_size=args.background_size,
      batch_size=args.batch_size, signature_name=args.signature_name,
      output_key=args.output_key, seed=args.seed)


def _load_schema(path: Optional[str]):
  if not path:
    return None
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  from tfx.utils import io_utils  # pylint: disable=g-import-not-at-top
  return io_utils.parse_pbtxt_file(path, schema_pb2.Schema())


def explain(args) -> int:
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  from tfx_explain.attribution_gen.executor import write_attributions  # pylint: disable=g-import-not-at-top
  from tfx_explain.beam.reading import count_records  # pylint: disable=g-import-not-at-top
  from tfx_explain.beam_executor import runs_in_this_environment  # pylint: disable=g-import-not-at-top
  from tfx_explain.engine.loading import serving_model_dir  # pylint: disable=g-import-not-at-top

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if tf.io.gfile.exists(args.out) and tf.io.gfile.listdir(args.out):
    raise FileExistsError(f'--out {args.out} exists and is not empty; give a new folder.')
  config = build_config(args)
  files = {EXPLAINED_SPLIT: _glob(args.examples, '--examples')}
  files[REFERENCE_SPLIT] = (_glob(args.reference_examples, '--reference-examples')
                            if args.reference_examples else files[EXPLAINED_SPLIT])
  locations = {split: os.path.dirname(paths[0]) for split, paths in files.items()}
  beam_args = args.beam_arg or ['--direct_running_mode=in_memory', '--direct_num_workers=1']
  model = serving_model_dir(args.model)
  in_process = runs_in_this_environment(beam_args) and not any(
      'multi_processing' in a for a in beam_args)
  total = (sum(count_records(path)[1] for path in files[EXPLAINED_SPLIT])
           if args.progress and in_process else 0)
  if args.max_examples and total:
    total = min(total, args.max_examples)

  def run():
    return write_attributions(config, config.to_json(), model, files, locations, args.out,
                              lambda: beam.Pipeline(options=PipelineOptions(beam_args)),
                              _load_schema(args.schema), args.transform_graph)

  if total:
    with ProgressBar(total):
      summaries = run()
  else:
    if args.progress:
      print('explaining (no progress bar: this runner\'s workers run in other processes)',
            file=sys.stderr)
    summaries = run()
  print(f'wrote {args.out}')
  print(summary_text(summaries[EXPLAINED_SPLIT]))
  return 0


def summary_text(summary, slice_name: str = 'Overall') -> str:
  """Examples, speed and mean |attribution| per feature and method, as a table."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  frame = summary.importance_frame(slice_name)
  lines = [f'split {summary.split}: {summary.examples} examples explained, '
           f'{summary.skipped_non_finite_rows} skipped for NaN/inf'
           + (f', {summary.examples_per_second:.0f} examples/s' if summary.examples_per_second
              else ''),
           f'mean |attribution| ({slice_name}):']
  with pd.option_context('display.width', 120, 'display.max_columns', 20,
                         'display.float_format', '{:.4g}'.format):
    lines.append(frame.to_string())
  for name, info in summary.methods.items():
    error = info.relative_completeness_error
    if error is not None:
      lines.append(f'{name}: relative completeness error p50 {error.p50:.3g}, '
                   f'p95 {error.p95:.3g}')
  return '\n'.join(lines)


def show(args) -> int:
  from tfx_explain.artifacts import layout  # pylint: disable=g-import-not-at-top
  from tfx_explain.artifacts import validation  # pylint: disable=g-import-not-at-top
  from tfx_explain.artifacts.summary import Summary  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if tf.io.gfile.exists(os.path.join(args.uri, validation.VALIDATION_FILE)):
    report = validation.load_validation(args.uri)
    print(f"{'BLESSED' if report['blessed'] else 'NOT BLESSED'}: "
          f"{sum(c['passed'] for c in report['checks'])} of {len(report['checks'])} passed")
    for c in report['checks']:
      interval = (f" [{c['lower']:.3g}, {c['upper']:.3g}]"
                  if c.get('lower') is not None and c.get('upper') is not None else '')
      value = '—' if c['value'] is None else f"{c['value']:.4g}"
      print(f"  {'pass' if c['passed'] else 'FAIL'} {c['check']} [{c['slice']}] "
            f"{c['method'] or ''} {c['feature'] or ''} {value}{interval} "
            f"{c['comparison']} {c['threshold']}")
    return 0
  splits = layout.available_splits(args.uri)
  if not splits:
    print(f'tfx-explain show: {args.uri} is neither an Attributions nor an '
          'ExplanationValidation artifact (no Split-* folders, no validation.json).',
          file=sys.stderr)
    return 2
  for split in ([args.split] if args.split else splits):
    print(summary_text(Summary.load(args.uri, split), args.slice))
  return 0


def add_commands(commands) -> None:
  parser = commands.add_parser('explain', help='explain a model on TFRecord files of '
                               'tf.Examples, writing an Attributions artifact folder')
  parser.add_argument('--model', required=True,
                      help='SavedModel folder (or a Model artifact with Format-Serving)')
  parser.add_argument('--examples', required=True, help="glob of TFRecord files, e.g. 'eval/*.gz'")
  parser.add_argument('--reference-examples',
                      help='glob of the files baselines and the background come from '
                           '(default: --examples)')
  parser.add_argument('--method', action='append', default=[],
                      help="method, optionally with options: 'kernel_shap:num_samples=512'")
  parser.add_argument('--config', help='an AttributionConfig as JSON (instead of the flags)')
  parser.add_argument('--label-key')
  parser.add_argument('--target', default='predicted', help="'predicted' or a class index")
  parser.add_argument('--slice', action='append', default=[], help='feature to slice by')
  parser.add_argument('--max-examples', type=int)
  parser.add_argument('--background-size', type=int, default=100)
  parser.add_argument('--batch-size', type=int, default=256)
  parser.add_argument('--signature-name')
  parser.add_argument('--output-key')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--schema', help='schema.pbtxt (default: features from the model)')
  parser.add_argument('--transform-graph', help="Transform's output folder, when the model "
                      'needs it in front')
  parser.add_argument('--beam-arg', action='append', default=[],
                      help='a Beam pipeline option, e.g. --beam-arg=--runner=FlinkRunner')
  parser.add_argument('--no-progress', dest='progress', action='store_false')
  parser.add_argument('--out', required=True, help='output folder (must not exist yet)')
  parser.set_defaults(run=explain)

  viewer = commands.add_parser('show', help="print an artifact's summary (or a validation)")
  viewer.add_argument('uri')
  viewer.add_argument('--split')
  viewer.add_argument('--slice', default='Overall')
  viewer.set_defaults(run=show)
