"""The `tfx-explain` command.

    tfx-explain template list
    tfx-explain template copy --name my-pipeline --dest ./my-pipeline [--model penguin]
    tfx-explain kubeflow compile --pipeline-root gs://BUCKET/root --image IMAGE [...]
    tfx-explain explain --model DIR --examples 'data/*.gz' --method integrated_gradients --out DIR
    tfx-explain show DIR
"""

from __future__ import annotations

import argparse
import sys

from tfx_explain import explain_cli


def _template_list(_args) -> int:
  from tfx_explain.templates import project  # pylint: disable=g-import-not-at-top
  for name, description in project.TEMPLATES.items():
    print(f'{name}: {description}')
  return 0


def _template_copy(args) -> int:
  from tfx_explain.templates import project  # pylint: disable=g-import-not-at-top
  try:
    written = project.copy_template(args.name, args.dest, template=args.model)
  except (ValueError, FileExistsError) as e:
    print(f'tfx-explain: {e}', file=sys.stderr)
    return 2
  print(f'Wrote {len(written)} files to {args.dest}. Next:\n'
        f'  cd {args.dest}\n  python -m pytest models\n  python local_runner.py')
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='tfx-explain', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest='command', required=True)

  template = commands.add_parser('template', help='start a project from a template')
  template_commands = template.add_subparsers(dest='template_command', required=True)
  template_commands.add_parser('list', help='list templates').set_defaults(run=_template_list)
  copy = template_commands.add_parser('copy', help='copy a template into a new project folder')
  copy.add_argument('--name', required=True, help='pipeline name (lowercase, digits, dashes)')
  copy.add_argument('--dest', required=True, help='new or empty project folder')
  copy.add_argument('--model', default='penguin', help='template to copy (see `template list`)')
  copy.set_defaults(run=_template_copy)

  explain_cli.add_commands(commands)

  kubeflow = commands.add_parser('kubeflow', help='Kubeflow Pipelines v2')
  kubeflow_commands = kubeflow.add_subparsers(dest='kubeflow_command', required=True)
  kubeflow_commands.add_parser(
      'compile', add_help=False,
      help='compile the penguin pipeline (options: tfx-explain kubeflow compile --help)')

  args, rest = parser.parse_known_args(argv)
  if args.command == 'kubeflow':
    from tfx_explain.kubeflow import runner  # pylint: disable=g-import-not-at-top
    return runner.main(rest, prog='tfx-explain kubeflow compile')
  if rest:
    parser.error(f'unrecognized arguments: {" ".join(rest)}')
  try:
    return args.run(args)
  except (ValueError, FileNotFoundError, FileExistsError) as e:   # ConfigError is a ValueError
    print(f'tfx-explain: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
