"""Export, optimise and measure: ONNX / OpenVINO exports checked against eager PyTorch
on every output, int8 / bf16 / SVD / BN-folded / compiled variants checked against the
fp32 model's mean IU, and a benchmark that reports each one's speed.

This layer writes and verifies files; ``fcnkit.inference.runtime.open_model`` opens them.
"""
