"""cifar10_runtime: serve CIFAR-10 ONNX models with onnxruntime, no TensorFlow.

>>> from cifar10_runtime import Predictor
>>> Predictor("model.onnx").predict("cat.png").label
"""

from cifar10_runtime.errors import CifarError, ConfigError, ImageError, ModelError
from cifar10_runtime.images import load_image
from cifar10_runtime.prediction import ClassScore, Prediction
from cifar10_runtime.predictor import Predictor

__version__ = "0.1.0"

__all__ = [
    "CifarError",
    "ClassScore",
    "ConfigError",
    "ImageError",
    "ModelError",
    "Prediction",
    "Predictor",
    "__version__",
    "load_image",
]
