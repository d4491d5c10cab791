"""Artifact layout and I/O of tfx-explain, read and written through one schema.

    layout      file and folder names, split folders, JSON helpers
    tables      the per-example Parquet table and image maps
    statistics  per-slice sums of attributions, and their means (computed here only)
    summary     Summary: summary.json as a typed value, built by one pure function
    tfma        the TFMA files: AttributionsForSlice records and an EvalRun
    validation  validation.json of ExplanationValidation
    storage     staged writes published only on success; storage errors named

No TFX imports: a notebook reads artifacts with TensorFlow's file system only.
"""
