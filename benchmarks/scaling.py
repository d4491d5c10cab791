"""AttributionGen scaling with split size, peak memory, and 2 worker processes vs 1.

Generates penguin-like eval splits of 10k, 100k and 1M examples (rows drawn
from the penguin table with jitter on the floats; gzipped TFRecords in 4
shards, as ExampleGen writes them) and a fixed 10k-example train split that
baselines and the background come from. Each AttributionGen run (executor,
DirectRunner) happens in a fresh process, so its peak memory is its own:

  seconds      wall time of the executor's Do(), inside the process
  peak RSS     resident memory of the process and all its children, sampled
               every 50 ms from outside (so multi-process runs count every worker)

Time ~ c * n^k is fitted on logs; k = 1 is linear.

Worker processes: the largest split with --direct_running_mode=multi_processing
and 1 worker, then 2 workers, each with one TensorFlow thread
(tf_threads_per_worker=1), so the figure is what a second worker adds, not
what a second thread pool does (target >= 1.7x on 2 cores). The two run back
to back as a pair, WORKER_PAIRS times; the figure is the median of the pairs'
ratios, so a slow spell on a shared machine moves both sides of a pair. Both
include what does not grow with the split: starting the workers and importing
TensorFlow in them, the executor's input checks, the runner stopping its
workers one after the other.

    python benchmarks/scaling.py [--sizes 10000 100000 1000000] [--out results/scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # pylint: disable=g-import-not-at-top,wrong-import-position

TARGET_MAX_EXPONENT = 1.1   # linear, within timing noise
TARGET_MEMORY_RATIO = 1.2
SHARDS = 4
REFERENCE_EXAMPLES = 10000
IN_MEMORY = ('--direct_running_mode=in_memory', '--direct_num_workers=1')
ONE_WORKER = ('--direct_running_mode=multi_processing', '--direct_num_workers=1')
TWO_WORKERS = ('--direct_running_mode=multi_processing', '--direct_num_workers=2')
TARGET_WORKER_SPEEDUP = 1.7
WORKER_PAIRS = 3   # odd: the median is one pair's


def config(steps: int, tf_threads=None):
  from tfx_explain import AttributionConfig, IntegratedGradients  # pylint: disable=g-import-not-at-top
  return AttributionConfig(methods=[IntegratedGradients(steps=steps)], splits=['eval'],
                           label_key='species', tf_threads_per_worker=tf_threads)


def run_one(args) -> None:
  """Child process: one executor run; prints its figures as JSON on the last line."""
  import resource  # pylint: disable=g-import-not-at-top
  common.quiet_absl()
  with open(os.path.join(args.run_one, 'artifacts.json')) as f:
    artifacts = common.Artifacts(**json.load(f))
  seconds = common.run_attribution_gen(artifacts, config(args.steps, args.tf_threads),
                                       args.output, args.beam_args.split())
  from tfx_explain import load_summary  # pylint: disable=g-import-not-at-top
  summary = load_summary(args.output, 'eval')
  print(json.dumps({'seconds': seconds, 'examples': summary.examples,
                    'self_max_rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def prepare(root: str, sizes) -> dict:
  """Model, schema and one examples directory per size; returns size -> directory."""
  spec = common.penguin_model()
  train = common.penguin_rows(REFERENCE_EXAMPLES, seed=2)
  schema = common.schema_for(train)
  common.write_schema(os.path.join(root, 'schema'), schema)
  common.save_serving_model(spec.model, os.path.join(root, 'model'), schema, 'species')
  directories = {}
  for size in sizes:
    directory = os.path.join(root, f'n{size}')
    examples = os.path.join(directory, 'examples')
    common.write_split(examples, 'train', train, shards=1)
    common.write_split(examples, 'eval', common.penguin_rows(size, seed=1), shards=SHARDS)
    with open(os.path.join(directory, 'artifacts.json'), 'w') as f:
      json.dump({'examples_uri': examples, 'schema_uri': os.path.join(root, 'schema'),
                 'model_uri': os.path.join(root, 'model'), 'splits': ['train', 'eval']}, f)
    directories[size] = directory
  return directories


def measured_run(directory: str, steps: int, beam_args, tf_threads=None) -> dict:
  output = os.path.join(directory, 'out-' + '-'.join(a.split('=')[1] for a in beam_args))
  command = [sys.executable, os.path.abspath(__file__), '--run-one', directory,
             '--output', output, '--steps', str(steps), '--beam-args', ' '.join(beam_args)]
  if tf_threads:
    command += ['--tf-threads', str(tf_threads)]
  wall, peak, stdout = common.run_measured(command)
  figures = json.loads(stdout.strip().splitlines()[-1])
  figures.update({'process_seconds': wall, 'peak_rss_bytes': peak})
  shutil.rmtree(output, ignore_errors=True)
  threads = f', {tf_threads} TF thread(s) per worker' if tf_threads else ''
  print(f"  {figures['examples']:>9,} examples {' '.join(beam_args)}{threads}: "
        f"{figures['seconds']:.1f} s, "
        f"peak RSS {peak / 2 ** 20:,.0f} MiB", flush=True)
  return figures


def worker_runs(directory: str, steps: int, examples: int) -> dict:
  """WORKER_PAIRS pairs of (1 worker, 2 workers) runs back to back; median ratio."""
  pairs = []
  for _ in range(WORKER_PAIRS):
    one = measured_run(directory, steps, ONE_WORKER, tf_threads=1)
    two = measured_run(directory, steps, TWO_WORKERS, tf_threads=1)
    pairs.append({'one_worker_seconds': one['seconds'], 'two_workers_seconds': two['seconds'],
                  'speedup': one['seconds'] / two['seconds'],
                  'one_worker_peak_rss_bytes': one['peak_rss_bytes'],
                  'two_workers_peak_rss_bytes': two['peak_rss_bytes']})
  median = sorted(pairs, key=lambda p: p['speedup'])[len(pairs) // 2]
  return {'examples': examples, 'pairs': pairs, **median}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--sizes', type=int, nargs='+', default=[10000, 100000, 1000000])
  parser.add_argument('--steps', type=int, default=16, help='Integrated Gradients points')
  parser.add_argument('--multi-processing-size', type=int, default=None,
                      help='split size for the 2-worker comparison (default: the largest)')
  parser.add_argument('--out', default=os.path.join(common.RESULTS_DIR, 'scaling.json'))
  parser.add_argument('--run-one', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--output', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--beam-args', default=' '.join(IN_MEMORY), help=argparse.SUPPRESS)
  parser.add_argument('--tf-threads', type=int, default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.run_one:
    run_one(args)
    return {}

  sizes = sorted(args.sizes)
  mp_size = args.multi_processing_size or sizes[-1]
  root = tempfile.mkdtemp(prefix='tfx-explain-scaling-')
  try:
    directories = prepare(root, sorted(set(sizes + [mp_size])))
    runs = {size: measured_run(directories[size], args.steps, IN_MEMORY) for size in sizes}
    workers = worker_runs(directories[mp_size], args.steps, mp_size)
  finally:
    shutil.rmtree(root, ignore_errors=True)

  seconds = [runs[s]['seconds'] for s in sizes]
  peaks = [runs[s]['peak_rss_bytes'] for s in sizes]
  figures = {
      'machine': common.machine(),
      'model': 'penguin MLP (4 float + 2 string inputs, 16-16-3)',
      'method': f'IntegratedGradients(steps={args.steps}), batch_size 256',
      'reference_examples': REFERENCE_EXAMPLES, 'shards': SHARDS,
      'runs': [{'examples': s, **runs[s],
                'examples_per_s': s / runs[s]['seconds']} for s in sizes],
      'time_exponent': common.loglog_exponent(sizes, seconds),
      'time_exponent_last_step': common.loglog_exponent(sizes[-2:], seconds[-2:]),
      'memory_ratio_largest_vs_smallest': peaks[-1] / peaks[0],
      'multi_processing': workers,
  }
  figures['headline'] = headline(figures)
  common.write_results(args.out, figures, markdown_table(figures))
  return figures


def headline(figures: dict) -> list:
  mp = figures['multi_processing']
  return [
      {'figure': 'AttributionGen time exponent k (time ~ n^k), 10k -> 1M',
       'value': figures['time_exponent'], 'target': TARGET_MAX_EXPONENT,
       'pass': figures['time_exponent'] <= TARGET_MAX_EXPONENT, 'lower_is_better': True},
      {'figure': 'AttributionGen peak memory, largest ÷ smallest split',
       'value': figures['memory_ratio_largest_vs_smallest'], 'target': TARGET_MEMORY_RATIO,
       'pass': figures['memory_ratio_largest_vs_smallest'] <= TARGET_MEMORY_RATIO,
       'lower_is_better': True},
      {'figure': f"2 worker processes ÷ 1, one TF thread each ({mp['examples']:,} examples), "
                 f"speed-up, median of {len(mp['pairs'])} pairs",
       'value': mp['speedup'], 'target': TARGET_WORKER_SPEEDUP,
       'pass': mp['speedup'] >= TARGET_WORKER_SPEEDUP},
  ]


def markdown_table(figures: dict) -> str:
  mib = lambda b: f'{b / 2 ** 20:,.0f}'
  lines = [f"AttributionGen scaling, {figures['model']}, {figures['method']}, DirectRunner; "
           f"{common.machine_text(figures['machine'])}.", '',
           '| eval examples | seconds | examples/s | peak RSS (MiB) |', '|---:|---:|---:|---:|']
  for run in figures['runs']:
    lines.append(f"| {run['examples']:,} | {run['seconds']:.1f} | {run['examples_per_s']:,.0f} | "
                 f"{mib(run['peak_rss_bytes'])} |")
  mp = figures['multi_processing']
  lines += ['', f"Time exponent k = {figures['time_exponent']:.2f} over all sizes "
            f"({figures['time_exponent_last_step']:.2f} from the second-largest to the largest); "
            f"peak memory largest ÷ smallest = {figures['memory_ratio_largest_vs_smallest']:.2f}. "
            f"Targets: k <= {TARGET_MAX_EXPONENT} (linear), memory ratio <= {TARGET_MEMORY_RATIO}.",
            '', '| pair | 1 worker, 1 TF thread (s) | 2 workers, 1 TF thread each (s) | '
            'speed-up | peak RSS 1 / 2 workers, all processes (MiB) |',
            '|---:|---:|---:|---:|---:|']
  for i, pair in enumerate(mp['pairs'], 1):
    lines.append(f"| {i} | {pair['one_worker_seconds']:.1f} | {pair['two_workers_seconds']:.1f} | "
                 f"{pair['speedup']:.2f} | {mib(pair['one_worker_peak_rss_bytes'])} / "
                 f"{mib(pair['two_workers_peak_rss_bytes'])} |")
  lines += ['', f"2 workers ÷ 1 on {figures['machine']['cores']} cores, {mp['examples']:,} "
            f"examples: {mp['speedup']:.2f}x (median of the pairs; target >= "
            f"{TARGET_WORKER_SPEEDUP}). Each run includes starting its workers, importing "
            "TensorFlow in them, the executor's input checks and the runner stopping its "
            'workers one after the other. '
            f"The train split ({figures['reference_examples']:,} examples) that baselines come "
            'from is the same in every run.']
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main(sys.argv[1:])
