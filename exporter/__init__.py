"""cifar10_exporter: Keras to ONNX with preprocessing in the graph, metadata and a parity check.

Python API (heavy libraries are imported only when used):

    from cifar10_exporter import ExportConfig, export, verify
    result = export(ExportConfig(output="model.onnx", model="runs/latest/model.keras"))
    result.parity.passed, result.parity.to_dict()

    from cifar10_exporter.checks.parity import check_parity
"""

from cifar10_exporter.config import ExportConfig
from cifar10_exporter.pipeline import ExportResult, export
from cifar10_exporter.verify import verify

__version__ = "0.1.0"
__all__ = ["ExportConfig", "ExportResult", "export", "verify", "__version__"]
