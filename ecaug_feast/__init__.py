"""ecaug-feast: expand sparse e-commerce training data and plug it into Feast and TorchRec."""

__version__ = "0.1.0"
