"""Independent NumPy reference implementations of MediaPipe's SSD post-processing.

Literal loop-based ports of the behaviour described in ``docs/semantics.md``
(section numbers in comments refer to it; "spec" means that document), over Python
scalars with ``np.float32`` placed wherever the C++ rounds to single precision.
They are slow on purpose: a reviewer should be able to read them beside the spec
paragraph by paragraph. Only NumPy and the standard library are used.

Modules:

* ``anchors``   -- SsdAnchorsCalculator (spec §1).
* ``decoding``  -- TensorsToDetectionsCalculator, CPU path (spec §2).
* ``nms``       -- NonMaxSuppressionCalculator, DEFAULT and WEIGHTED (spec §3).
* ``letterbox`` -- ImageToTensor padding / sampling, letterbox removal and
  detection projection (spec §4).
* ``tflite_ops`` -- loop reference of the TFLite float kernels the detector
  and landmark networks use (conv, depthwise, pooling, resize, depth-to-space,
  prelu, pad, add, fully connected, logistic, mean, concatenation, reshape,
  densify); written from TFLite's reference kernels rather than the spec, and
  checked against LiteRT.
* ``landmarks`` -- TensorsToLandmarks, LandmarkLetterboxRemoval,
  LandmarkProjection (NORM_RECT with or without IMAGE_DIMENSIONS, and
  PROJECTION_MATRIX) and WorldLandmarkProjection; written from MediaPipe's C++
  sources (the spec covers only the NORM_RECT projection, §7.4).

Option dictionaries use the MediaPipe proto field names as keys. A key that is
absent means "not set" (proto default, or has-bit unset where the spec says
presence matters). Enum values are strings. Where MediaPipe would CHECK-fail,
return an error status or hang, these references raise ``ValueError``.
"""
