"""Export, optimise and measure: ONNX / OpenVINO exports checked against eager PyTorch,
int8 / bf16 / SVD / BN-folded / compiled variants checked against the fp32 model's
mean IU, and a benchmark that reports each one's speed.

``load_runtime(path)`` opens any of them behind one call: ``runtime(x) -> logits``.
"""

from .runtime import OnnxRuntimeModel, OpenVINOModel, Runtime, TorchRuntime, load_runtime

__all__ = ["Runtime", "OnnxRuntimeModel", "OpenVINOModel", "TorchRuntime", "load_runtime"]
