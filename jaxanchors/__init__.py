"""jaxanchors: MediaPipe's SSD anchors, box decoding and NMS as pure JAX functions."""

from jaxanchors import presets
from jaxanchors.anchors import AnchorLayer
from jaxanchors.anchors import AnchorOptions
from jaxanchors.anchors import anchor_layers
from jaxanchors.anchors import anchors_numpy
from jaxanchors.anchors import generate_anchors
from jaxanchors.anchors import num_anchors

__version__ = "0.1.0"

__all__ = (
    "AnchorLayer",
    "AnchorOptions",
    "anchor_layers",
    "anchors_numpy",
    "generate_anchors",
    "num_anchors",
    "presets",
)
