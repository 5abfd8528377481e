"""cifar10_trainer: data, the two-block CNN, the training loop and `cifar-train`."""

__version__ = "0.1.0"
