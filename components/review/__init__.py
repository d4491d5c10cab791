"""Review surfaces of our artifacts: HTML reports, plots, TensorBoard, image galleries,
and notebook access to ML Metadata. They read artifacts through `tfx_explain.artifacts`.
"""
