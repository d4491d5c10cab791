"""Runs every benchmark (what `make bench` does) and collates their headline figures.

Each benchmark runs in its own process and writes results/<name>.json and
results/<name>.md. This then writes results/SUMMARY.md (and .json): every
headline ratio against its target, PASS or MISS, the wall time of each
benchmark and of the whole run, and the machine. The same tables replace the
"Latest results" section of benchmarks/README.md, and the summary that of the
project's README.

    python benchmarks/run_all.py [--only ig_throughput kernel_shap ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, 'results')
README = os.path.join(HERE, 'README.md')
TOP_README = os.path.join(os.path.dirname(HERE), 'README.md')   # gets the summary only
BENCHMARKS = ('ig_throughput', 'kernel_shap', 'tree_shap', 'token_shap', 'end_to_end', 'scaling')
START_MARK = '<!-- latest results: written by run_all.py -->'
END_MARK = '<!-- end of latest results -->'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--only', nargs='+', choices=BENCHMARKS, default=list(BENCHMARKS))
  args = parser.parse_args(argv)
  started = time.perf_counter()
  timings, failed = {}, []
  for name in args.only:
    print(f'== {name}', flush=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    code = subprocess.call([sys.executable, os.path.join(HERE, f'{name}.py'),
                            '--out', os.path.join(RESULTS, f'{name}.json')])
    timings[name] = {'seconds': time.perf_counter() - start, 'load_before': load_before,
                     'load_after': os.getloadavg()[0]}
    if code:
      failed.append(name)
      print(f'!! {name} failed with exit code {code}', flush=True)
  total = time.perf_counter() - started
  summary = collate(timings, total)
  with open(os.path.join(RESULTS, 'SUMMARY.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  text = summary_markdown(summary)
  with open(os.path.join(RESULTS, 'SUMMARY.md'), 'w') as f:
    f.write(text)
  update_readme(text)
  print(text)
  return 1 if failed else 0


def collate(timings: dict, total_seconds: float) -> dict:
  rows, machine = [], None
  for name in BENCHMARKS:
    path = os.path.join(RESULTS, f'{name}.json')
    if not os.path.exists(path):
      continue
    with open(path) as f:
      figures = json.load(f)
    machine = machine or figures.get('machine')
    for row in figures.get('headline', []):
      rows.append({'benchmark': name, **row})
  return {'date': datetime.date.today().isoformat(), 'machine': machine, 'rows': rows,
          'timings': timings, 'total_seconds': total_seconds}


def summary_markdown(summary: dict) -> str:
  m = summary['machine'] or {}
  lines = ['# Benchmark summary', '',
           f"{summary['date']}; {m.get('arch')}, {m.get('cores')} cores ({m.get('cpu')}), "
           f"{m.get('memory_gib')} GiB, Python {m.get('python')}, TensorFlow "
           f"{m.get('tensorflow')}, Beam {m.get('beam')}.", '',
           '| benchmark | figure | measured | target | result |', '|---|---|---:|---:|---|']
  for row in summary['rows']:
    target = row.get('target')
    if target is None:
      target_text, result = '—', 'reported'
    else:
      target_text = f"{'<=' if row.get('lower_is_better') else '>='} {target:g}"
      result = 'PASS' if row['pass'] else 'MISS'
    note = f" ({row['note']})" if row.get('note') else ''
    lines.append(f"| {row['benchmark']} | {row['figure']}{note} | {row['value']:.2f} | "
                 f"{target_text} | {result} |")
  lines += ['', '| benchmark | wall time (s) | load average before → after |', '|---|---:|---|']
  for name, t in summary['timings'].items():
    lines.append(f"| {name} | {t['seconds']:.0f} | "
                 f"{t['load_before']:.1f} → {t['load_after']:.1f} |")
  lines.append(f"| **all** | **{summary['total_seconds']:.0f}** | |")
  lines += ['', 'Load average is the machine\'s 1-minute load; above the core count, other '
            'work shared the CPUs during that benchmark.']
  return '\n'.join(lines) + '\n'


def update_readme(summary_text: str) -> None:
  """Replaces the latest-results sections: every table here, the summary in the project README."""
  parts = [summary_text.replace('# Benchmark summary', '### Summary')]
  for name in BENCHMARKS:
    path = os.path.join(RESULTS, f'{name}.md')
    if os.path.exists(path):
      with open(path) as f:
        parts.append(f'### {name}\n\n' + f.read())
  _replace_marked(README, '\n'.join(parts))
  _replace_marked(TOP_README, summary_text.replace('# Benchmark summary\n\n', '')
                  + '\nEvery table, and what limits the figures that miss: '
                  '[benchmarks/README.md](benchmarks/README.md).\n')


def _replace_marked(path: str, content: str) -> None:
  if not os.path.exists(path):
    return
  with open(path) as f:
    text = f.read()
  if START_MARK not in text or END_MARK not in text:
    return
  head, rest = text.split(START_MARK, 1)
  _, tail = rest.split(END_MARK, 1)
  with open(path, 'w') as f:
    f.write(head + START_MARK + '\n\n' + content + '\n' + END_MARK + tail)


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
