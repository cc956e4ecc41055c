"""jaxanchors: MediaPipe's SSD anchors, box decoding and NMS as pure JAX functions."""

from jaxanchors import boxes
from jaxanchors import finetune
from jaxanchors import images
from jaxanchors import losses
from jaxanchors import matching
from jaxanchors import ops
from jaxanchors import presets
from jaxanchors.anchors import AnchorLayer
from jaxanchors.anchors import AnchorOptions
from jaxanchors.anchors import anchor_layers
from jaxanchors.anchors import anchors_numpy
from jaxanchors.anchors import generate_anchors
from jaxanchors.anchors import num_anchors
from jaxanchors.boxes import OverlapType
from jaxanchors.boxes import overlap
from jaxanchors.boxes import pairwise_overlap
from jaxanchors.decoding import BoxFormat
from jaxanchors.decoding import DecoderOptions
from jaxanchors.decoding import anchors_from_yxhw
from jaxanchors.decoding import decode
from jaxanchors.decoding import decode_postprocessed
from jaxanchors.decoding import encode
from jaxanchors.images import read_image
from jaxanchors.detections import Detections
from jaxanchors.detector import Detector
from jaxanchors.detector import ImageDetections
from jaxanchors.detections import count
from jaxanchors.detections import from_xywh
from jaxanchors.detections import to_pixels
from jaxanchors.detections import to_xywh
from jaxanchors.letterbox import DetectionMapping
from jaxanchors.letterbox import ImageToTensorOptions
from jaxanchors.letterbox import LetterboxTransform
from jaxanchors.letterbox import letterbox
from jaxanchors.letterbox import project_detections
from jaxanchors.letterbox import remove_letterbox
from jaxanchors.matching import MatcherOptions
from jaxanchors.matching import Matches
from jaxanchors.matching import Targets
from jaxanchors.matching import argmax_match
from jaxanchors.matching import assign_targets
from jaxanchors.matching import match
from jaxanchors.matching import mine_hard_negatives
from jaxanchors.nms import NmsAlgorithm
from jaxanchors.nms import NmsOptions
from jaxanchors.nms import non_max_suppression
from jaxanchors.pipeline import PipelineOptions
from jaxanchors.pipeline import detect
from jaxanchors.pipeline import detect_images

__version__ = "0.1.0"

__all__ = (
    "AnchorLayer",
    "AnchorOptions",
    "BoxFormat",
    "DecoderOptions",
    "DetectionMapping",
    "Detections",
    "Detector",
    "ImageDetections",
    "ImageToTensorOptions",
    "LetterboxTransform",
    "MatcherOptions",
    "Matches",
    "NmsAlgorithm",
    "NmsOptions",
    "OverlapType",
    "PipelineOptions",
    "Targets",
    "anchor_layers",
    "anchors_from_yxhw",
    "anchors_numpy",
    "argmax_match",
    "assign_targets",
    "boxes",
    "count",
    "decode",
    "decode_postprocessed",
    "detect",
    "detect_images",
    "encode",
    "finetune",
    "from_xywh",
    "generate_anchors",
    "images",
    "letterbox",
    "losses",
    "match",
    "matching",
    "mine_hard_negatives",
    "non_max_suppression",
    "num_anchors",
    "ops",
    "overlap",
    "pairwise_overlap",
    "presets",
    "project_detections",
    "read_image",
    "remove_letterbox",
    "to_pixels",
    "to_xywh",
)
