"""ExplanationValidator's keys; its blessing uses Evaluator's own names."""

from tfx.components.evaluator import constants as evaluator_constants
from tfx.types import standard_component_specs

ATTRIBUTIONS_KEY = 'attributions'
BASELINE_ATTRIBUTIONS_KEY = 'baseline_attributions'
MODEL_BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
TRANSFORM_GRAPH_KEY = standard_component_specs.TRANSFORM_GRAPH_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY
VALIDATION_KEY = 'validation'
CONFIG_KEY = 'config'

# The blessing is written as Evaluator writes one, so Pusher and
# LatestBlessedModelStrategy take it as is.
BLESSED_FILE = evaluator_constants.BLESSED_FILE_NAME
NOT_BLESSED_FILE = evaluator_constants.NOT_BLESSED_FILE_NAME
BLESSED_PROPERTY = evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY
BLESSED_VALUE = evaluator_constants.BLESSED_VALUE
NOT_BLESSED_VALUE = evaluator_constants.NOT_BLESSED_VALUE
CURRENT_MODEL_PROPERTY = evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY
CURRENT_MODEL_ID_PROPERTY = evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY
BASELINE_MODEL_PROPERTY = evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY
BASELINE_MODEL_ID_PROPERTY = evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY

# Custom properties of the ExplanationValidation artifact.
CHECKS_PROPERTY = 'checks'
FAILED_CHECKS_PROPERTY = 'failed_checks'
FIRST_FAILURE_PROPERTY = 'first_failure'
