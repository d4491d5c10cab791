"""Transform and Trainer as TFX's own example pipelines wire them, on one module file.

TFX's penguin, imdb and taxi examples all run a module's `preprocessing_fn` in
Transform and its `run_fn` in Trainer on the transformed examples, the
Transform graph and the schema.
"""

from __future__ import annotations


def transform_and_trainer(example_gen, schema_gen, module_file: str, train_steps: int,
                          eval_steps: int):
  """(Transform, Trainer) on `module_file`, the Trainer reading Transform's outputs."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  transform = tfx.components.Transform(examples=example_gen.outputs['examples'],
                                       schema=schema_gen.outputs['schema'],
                                       module_file=module_file)
  trainer = tfx.components.Trainer(
      module_file=module_file, examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'], schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=eval_steps))
  return transform, trainer
