"""The layers of components/ (see components/README.md) import only what their layer may."""

import json
import os
import pkgutil
import subprocess
import sys

import pytest

import tfx_explain

ROOT = os.path.dirname(tfx_explain.__file__)


def _modules(package):
  path = os.path.join(ROOT, *package.split('.')[1:])
  names = [package] if os.path.exists(os.path.join(path, '__init__.py')) else []
  names += [f'{package}.{m.name}' for m in pkgutil.iter_modules([path])]
  return names


# package -> what importing any of its modules must not load.
RULES = {
    'tfx_explain.engine': ('tfx', 'apache_beam'),
    'tfx_explain.artifacts': ('tfx',),
    'tfx_explain.beam': ('tfx',),
    'tfx_explain.validation': ('tfx', 'apache_beam'),
    'tfx_explain.pruning': ('tfx',),
    'tfx_explain.review': ('tfx',),
}
# Single-file modules at the package root.
MODULE_RULES = {
    'tfx_explain.validators': ('tfx', 'apache_beam'),
    'tfx_explain.configurable': ('tfx', 'apache_beam'),
    'tfx_explain.config': ('tfx', 'apache_beam'),
}
# Artifact I/O without Beam: what a notebook reading an artifact loads (TFMA's writers need Beam).
NO_BEAM_ARTIFACTS = ('layout', 'tables', 'statistics', 'summary', 'validation', 'storage')


_PROBE = """
import importlib, json, sys
modules, forbidden = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
for module in modules:
  importlib.import_module(module)
  loaded = forbidden & {m.split('.')[0] for m in sys.modules}
  if loaded:
    print(json.dumps([module, sorted(loaded)]))
    break
else:
  print(json.dumps(None))
"""


def _first_violation(modules, forbidden):
  """(module, forbidden packages it loaded) for the first module that loads one, or None.

  Modules are imported one after another in a fresh interpreter, so what each
  one adds is what the module before it had not loaded yet.
  """
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  done = subprocess.run([sys.executable, '-c', _PROBE, json.dumps(list(modules)),
                         json.dumps(list(forbidden))], capture_output=True, text=True, env=env,
                        check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('package', sorted(RULES))
def test_layer_imports(package):
  violation = _first_violation(_modules(package), RULES[package])
  assert violation is None, (
      f'importing {violation[0]} loads {violation[1]}: that dependency belongs to a layer '
      'above (see components/README.md).')


@pytest.mark.parametrize('module', sorted(MODULE_RULES))
def test_root_module_imports(module):
  assert _first_violation([module], MODULE_RULES[module]) is None


def test_artifact_reading_needs_no_beam():
  modules = [f'tfx_explain.artifacts.{name}' for name in NO_BEAM_ARTIFACTS]
  assert _first_violation(modules, ('tfx', 'apache_beam')) is None


def test_package_import_loads_no_framework():
  assert _first_violation(['tfx_explain'], ('tensorflow', 'tfx', 'apache_beam')) is None


def test_every_package_has_a_rule():
  packages = {f'tfx_explain.{m.name}' for m in pkgutil.iter_modules([ROOT]) if m.ispkg}
  components = {'tfx_explain.attribution_gen', 'tfx_explain.explanation_validator',
                'tfx_explain.pruned_model_trainer'}
  assert packages - components == set(RULES)


# Which of our own packages each layer may import (itself included), read from the source:
# a lower layer importing a higher one fails even when that import would load no framework.
OWN_IMPORTS = {
    'engine': {'engine', 'configurable', 'validators'},
    'configurable': set(),
    'validators': {'configurable'},
    'config': {'engine', 'configurable', 'validators'},
    'artifacts': {'artifacts', 'engine'},
    'validation': {'validation', 'artifacts', 'engine', 'config', 'configurable', 'validators'},
    'pruning': {'pruning', 'engine', 'configurable', 'validators'},
    'beam': {'beam', 'artifacts', 'engine', 'config'},
    'review': {'review', 'artifacts', 'beam', 'validation'},
}


def _own_imports(path):
  """The tfx_explain packages a file imports, anywhere in it (function-level imports too)."""
  import ast  # pylint: disable=g-import-not-at-top
  tree = ast.parse(open(path, encoding='utf-8').read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module)
      if node.module == 'tfx_explain':
        names.update(f'tfx_explain.{alias.name}' for alias in node.names)
  return {n.split('.')[1] for n in names if n.startswith('tfx_explain.')}


@pytest.mark.parametrize('layer', sorted(OWN_IMPORTS))
def test_layers_import_only_layers_below(layer):
  path = os.path.join(ROOT, layer)
  files = ([os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith('.py')]
           if os.path.isdir(path) else [path + '.py'])
  wrong = {os.path.relpath(f, ROOT): sorted(_own_imports(f) - OWN_IMPORTS[layer])
           for f in files}
  assert not {f: w for f, w in wrong.items() if w}, (
      f'{layer} imports layers above it: {wrong}; see components/README.md.')
