"""Example pipelines that use tfx-explain components."""
