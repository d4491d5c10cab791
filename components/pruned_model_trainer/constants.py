"""PrunedModelTrainer's keys and file names."""

from tfx.types import standard_component_specs

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
SCHEMA_KEY = standard_component_specs.SCHEMA_KEY
BASE_MODEL_KEY = standard_component_specs.BASE_MODEL_KEY
TRANSFORM_GRAPH_KEY = standard_component_specs.TRANSFORM_GRAPH_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
MODEL_RUN_KEY = standard_component_specs.MODEL_RUN_KEY
CONFIG_KEY = 'config'

REPORT_FILE = 'pruning_report.json'
BASE_MODEL_PROPERTY = 'base_model'
