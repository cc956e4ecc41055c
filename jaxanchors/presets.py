"""Options of every MediaPipe SSD model, by name (spec ``mediapipe.md`` §5).

A :class:`Preset` bundles what one shipped graph configures, so one name sets up
anchors (and, as the pipeline grows, decoding, NMS and preprocessing). Counts
are those of each graph's ``num_boxes``.

========================  =====  ================  =======
name                      input  strides           anchors
========================  =====  ================  =======
``face_short_range``      128    8,16,16,16        896
``face_full_range``       192    4                 2304
``blazeface_back``        256    16,32,32,32       896
``palm``                  192    8,16,16,16        2016
``palm_128``              128    8,16,16,16        896
``palm_v1``               256    8,16,32,32,32     2944
``pose``                  224    8,16,32,32,32     2254
``ssdlite_coco``          320    16..512           2034
``objectron_oidv4``       300    16..512           1917
========================  =====  ================  =======
"""

from __future__ import annotations

import dataclasses

from jaxanchors.anchors import AnchorOptions

__all__ = ["Preset", "get", "names", "PRESETS"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preset:
  """Everything one MediaPipe graph configures for its SSD model.

  Attributes:
    name: the lookup name.
    description: the model and the graph it comes from.
    anchors: ``SsdAnchorsCalculator`` options.
  """

  name: str
  description: str
  anchors: AnchorOptions

  @property
  def input_size(self) -> tuple[int, int]:
    """Model input ``(height, width)`` in pixels."""
    return self.anchors.input_size_height, self.anchors.input_size_width


def _blaze(size: int, strides: tuple[int, ...], min_scale: float = 0.1484375,
           interp: float = 1.0) -> AnchorOptions:
  """The BlazeFace-family anchor recipe: fixed unit-size anchors, aspect 1."""
  return AnchorOptions(
      num_layers=len(strides), min_scale=min_scale, max_scale=0.75,
      input_size_height=size, input_size_width=size, anchor_offset_x=0.5,
      anchor_offset_y=0.5, strides=strides, aspect_ratios=(1.0,),
      interpolated_scale_aspect_ratio=interp, fixed_anchor_size=True)


def _mobile_ssd(size: int) -> AnchorOptions:
  """SSD-MobileNet anchors of the COCO / Objectron object detectors."""
  return AnchorOptions(
      num_layers=6, min_scale=0.2, max_scale=0.95, input_size_height=size,
      input_size_width=size, anchor_offset_x=0.5, anchor_offset_y=0.5,
      strides=(16, 32, 64, 128, 256, 512), aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333),
      reduce_boxes_in_lowest_layer=True)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(name="face_short_range",
           description="BlazeFace front / face detection short range, 128x128 (spec §5.2)",
           anchors=_blaze(128, (8, 16, 16, 16))),
    Preset(name="face_full_range",
           description="Face detection full range (dense and sparse), 192x192 (spec §5.3)",
           anchors=_blaze(192, (4,), interp=0.0)),
    Preset(name="blazeface_back",
           description="BlazeFace back camera, 256x256, graphs 2020-05 to 2021-05 (spec §5.4)",
           anchors=_blaze(256, (16, 32, 32, 32), min_scale=0.15625)),
    Preset(name="palm",
           description="Palm detection lite/full, 192x192, 2021-11 on (spec §5.5)",
           anchors=_blaze(192, (8, 16, 16, 16))),
    Preset(name="palm_128",
           description="Palm detection 128x128, 2020-11 to 2021-11 (spec §5.5)",
           anchors=_blaze(128, (8, 16, 16, 16))),
    Preset(name="palm_v1",
           description="Original palm detection 256x256, 2019-2020 (spec §5.5)",
           anchors=_blaze(256, (8, 16, 32, 32, 32), min_scale=0.1171875)),
    Preset(name="pose",
           description="BlazePose detector, 224x224 (spec §5.6)",
           anchors=_blaze(224, (8, 16, 32, 32, 32))),
    Preset(name="ssdlite_coco",
           description="SSDLite object detection (COCO), 320x320 (spec §5.7)",
           anchors=_mobile_ssd(320)),
    Preset(name="objectron_oidv4",
           description="Objectron SSD MobileNetV2 (Open Images v4 subset), 300x300 (spec §5.8)",
           anchors=_mobile_ssd(300)),
)}


def names() -> tuple[str, ...]:
  """All preset names, in the order of the table above."""
  return tuple(PRESETS)


def get(name: str) -> Preset:
  """The preset called ``name``; ``ValueError`` listing the known names otherwise.

  Examples:
    >>> get("pose").anchors.strides
    (8, 16, 32, 32, 32)
  """
  if isinstance(name, Preset):
    return name
  try:
    return PRESETS[name]
  except (KeyError, TypeError):
    raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
