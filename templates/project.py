"""Copies a project template into a new folder, ready to run and to edit.

Each template is a folder beside this module. `{{PIPELINE_NAME}}` in its files
becomes the project's name; the data files it needs come from this package, so
a copy works offline.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Dict, List

TEMPLATES_DIR = os.path.dirname(os.path.abspath(__file__))
TEMPLATES: Dict[str, str] = {
    'penguin': 'tabular classification from a CSV: attributions, explanation gate, optional '
               'pruning; local and Kubeflow V2 runners',
}
# Kubeflow and Kubernetes accept lowercase names with dashes.
NAME_PATTERN = re.compile(r'^[a-z][a-z0-9-]{0,62}$')
PLACEHOLDER = '{{PIPELINE_NAME}}'
_SKIPPED = ('__pycache__', '.pytest_cache')


def _data_files(template: str) -> Dict[str, str]:
  """{path in the project: source file} for data shipped with this package."""
  if template == 'penguin':
    from tfx_explain.pipelines import penguin  # pylint: disable=g-import-not-at-top
    source = os.path.join(os.path.dirname(penguin.__file__), 'data', 'penguins.csv')
    return {os.path.join('data', 'penguins.csv'): source}
  return {}


def _inside(path: str, root: str) -> bool:
  return os.path.commonpath([os.path.realpath(path), os.path.realpath(root)]) == \
      os.path.realpath(root)


def copy_template(name: str, dest: str, template: str = 'penguin') -> List[str]:
  """Writes template `template` as project `name` into `dest`; returns the files written.

  `dest` must not exist or be an empty folder. The project is assembled in a
  sibling folder and moved into place at the end, so a failed copy leaves nothing.
  """
  if template not in TEMPLATES:
    raise ValueError(f'Unknown template {template!r}; available: {sorted(TEMPLATES)}.')
  if not NAME_PATTERN.match(name):
    raise ValueError(f'Pipeline name {name!r} must be lowercase letters, digits and dashes, '
                     'starting with a letter (at most 63 characters): Kubeflow uses it as-is.')
  dest = os.path.abspath(dest)
  if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
    raise FileExistsError(f'Destination {dest} exists and is not an empty folder.')
  source_root = os.path.join(TEMPLATES_DIR, template)
  parent = os.path.dirname(dest)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(dest)}.partial-', dir=parent)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(staging, 0o777 & ~umask)   # mkdtemp makes it private; a project folder is not
  written = []
  try:
    files = {}
    for root, dirs, names in os.walk(source_root):
      dirs[:] = [d for d in dirs if d not in _SKIPPED]
      for filename in names:
        if filename.endswith('.pyc'):
          continue
        source = os.path.join(root, filename)
        files[os.path.relpath(source, source_root)] = source
    files.update(_data_files(template))
    for relative, source in sorted(files.items()):
      target = os.path.join(staging, relative)
      # Neither a template entry nor a link in it may write outside the project.
      if os.path.isabs(relative) or not _inside(target, staging) or os.path.islink(source):
        raise ValueError(f'Template file {relative!r} would be written outside {dest}.')
      os.makedirs(os.path.dirname(target), exist_ok=True)
      if relative.endswith(('.py', '.md', 'Dockerfile')):
        with open(source, encoding='utf-8') as f:
          text = f.read().replace(PLACEHOLDER, name)
        with open(target, 'w', encoding='utf-8') as f:
          f.write(text)
      else:
        shutil.copyfile(source, target)
      written.append(relative)
    if os.path.isdir(dest):
      os.rmdir(dest)   # empty, checked above
    os.rename(staging, dest)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return written
