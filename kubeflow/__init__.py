"""Kubeflow Pipelines v2: compile the penguin pipeline for KFP or Vertex AI Pipelines."""
