"""jaxanchors: MediaPipe's SSD anchors, box decoding and NMS as pure JAX functions."""

from jaxanchors import presets
from jaxanchors.anchors import AnchorLayer
from jaxanchors.anchors import AnchorOptions
from jaxanchors.anchors import anchor_layers
from jaxanchors.anchors import anchors_numpy
from jaxanchors.anchors import generate_anchors
from jaxanchors.anchors import num_anchors
from jaxanchors.decoding import BoxFormat
from jaxanchors.decoding import DecoderOptions
from jaxanchors.decoding import anchors_from_yxhw
from jaxanchors.decoding import decode
from jaxanchors.decoding import decode_postprocessed
from jaxanchors.decoding import encode
from jaxanchors.detections import Detections
from jaxanchors.detections import count
from jaxanchors.detections import from_xywh
from jaxanchors.detections import to_pixels
from jaxanchors.detections import to_xywh

__version__ = "0.1.0"

__all__ = (
    "AnchorLayer",
    "AnchorOptions",
    "BoxFormat",
    "DecoderOptions",
    "Detections",
    "anchor_layers",
    "anchors_from_yxhw",
    "anchors_numpy",
    "count",
    "decode",
    "decode_postprocessed",
    "encode",
    "from_xywh",
    "generate_anchors",
    "num_anchors",
    "presets",
    "to_pixels",
    "to_xywh",
)
