"""AttributionGen's input/output keys and the custom properties it records."""

from tfx.types import standard_component_specs

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
SCHEMA_KEY = standard_component_specs.SCHEMA_KEY
TRANSFORM_GRAPH_KEY = standard_component_specs.TRANSFORM_GRAPH_KEY
ATTRIBUTIONS_KEY = 'attributions'
CONFIG_KEY = 'config'

# Custom properties of the Attributions artifact. The model's id is how
# ExplanationValidator's blessing and the baseline resolver find these again.
MODEL_URI_PROPERTY = 'model_uri'
MODEL_ID_PROPERTY = 'model_id'
# The Transform output put in front of the model, so checks that reload it use the same one.
TRANSFORM_GRAPH_PROPERTY = 'transform_graph_uri'
SPLIT_NAMES_PROPERTY = 'split_names'
METHODS_PROPERTY = 'methods'
EXAMPLES_PER_SECOND_PROPERTY = 'examples_per_second'
PIPELINE_SECONDS_PROPERTY = 'pipeline_seconds'
