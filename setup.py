"""tfx-explain: model explanations as gated, tracked steps of TFX pipelines.

The repository's top-level folders map onto one import package, `tfx_explain`:
`components/` is the package root (engine, Beam transforms, artifact types,
components), `pipelines/` is `tfx_explain.pipelines`, `kubeflow/` is
`tfx_explain.kubeflow` and `templates/` is `tfx_explain.templates`.
"""

import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))

# Import-path root -> folder in this repository.
PACKAGE_ROOTS = {
    'tfx_explain': 'components',
    'tfx_explain.pipelines': 'pipelines',
    'tfx_explain.kubeflow': 'kubeflow',
    'tfx_explain.templates': 'templates',
}


def _packages():
  packages, package_dir = [], {}
  for root_package, folder in PACKAGE_ROOTS.items():
    if not os.path.isfile(os.path.join(HERE, folder, '__init__.py')):
      continue   # a folder whose package has not landed yet
    package_dir[root_package] = folder
    packages.append(root_package)
    for sub in setuptools.find_packages(os.path.join(HERE, folder)):
      name = f'{root_package}.{sub}'
      packages.append(name)
      package_dir[name] = os.path.join(folder, *sub.split('.'))
  return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

# Version bounds for users of the library. Our own environment is pinned
# exactly in requirements-lock.txt.
INSTALL_REQUIRES = [
    'tfx>=1.16.0,<1.17',
    'tensorflow>=2.16.1,<2.17',
    'tf-keras>=2.16.0,<2.17',
    'apache-beam[gcp]>=2.59.0,<2.60',
    'tensorflow-model-analysis>=0.47.0,<0.48',
    'ml-metadata>=1.16.0,<1.17',
    'tensorflow-model-optimization>=0.8.0,<0.9',
    'kfp-pipeline-spec>=0.2.2,<0.3',
    'protobuf>=3.20.3,<4',
    'numpy>=1.22,<2',
    'pandas>=1.5,<2',
    'pyarrow>=10,<11',
    'matplotlib>=3.7,<4',
    'google-crc32c>=1.5',   # TFRecord checksums in our reader
    # Beam 2.59 ships cloudpickle 2.2; newer joblib releases want cloudpickle 3.
    'joblib>=1.2,<1.5',
]

EXTRAS_REQUIRE = {
    'test': [
        'pytest>=8,<10',
        'pytest-timeout>=2,<3',
        'palmerpenguins>=0.1.4',
        'scikit-learn>=1.3,<1.6',
    ],
    # Tree SHAP on TensorFlow Decision Forests models. 1.9.2 is the release built for
    # TensorFlow 2.16 (it pins tensorflow==2.16.2); it names `ydf` as a dependency
    # without importing it, and ydf releases after 0.9 want protobuf >= 5, which
    # this TFX stack (protobuf 3.20) cannot take.
    'forests': [
        'tensorflow-decision-forests==1.9.2',
        'ydf==0.9.0',
    ],
    # Reference implementations we compare against in benchmarks.
    'bench': [
        'shap>=0.49,<0.50',
        'lime>=0.2.0.1,<0.3',
        'saliency>=0.2.1,<0.3',
        'psutil>=5',
    ],
}

setuptools.setup(
    name='tfx-explain',
    version='0.1.0',
    description='Feature attributions, explanation gates and pruning as TFX pipeline components.',
    long_description=open(os.path.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9,<3.11',
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        'tfx_explain.pipelines': ['*/data/*.csv'],
        # Template files, dotfiles included.
        'tfx_explain.templates': ['**/*', '**/.*'],
    },
    include_package_data=False,
    install_requires=INSTALL_REQUIRES,
    entry_points={'console_scripts': ['tfx-explain=tfx_explain.cli:main']},
    extras_require=EXTRAS_REQUIRE,
    classifiers=[
        'Programming Language :: Python :: 3.10',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
