"""mmauto: multimodal AutoML on Keras 3.

Nothing heavy is imported here: `mmauto --help` must stay free of TensorFlow.
"""

__version__ = "0.1.0"
