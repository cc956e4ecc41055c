"""The ``Detections`` pytree shared by decoding, NMS and the pipeline.

Convention, stated once for the whole package:

* ``boxes [..., N, 4]`` are ``[xmin, ymin, xmax, ymax]`` in coordinates
  normalised to the model input (0..1 inside the tensor; values outside are
  kept, nothing is clipped). MediaPipe's ``relative_bounding_box`` is
  ``(xmin, ymin, width, height)`` with ``width = xmax - xmin`` computed in
  float32; :func:`to_xywh` gives that form.
* ``keypoints [..., N, K, 2]`` are ``(x, y)`` in the same coordinates.
* ``scores [..., N]`` float, ``classes [..., N]`` int32 (MediaPipe's
  ``label_id``), ``valid [..., N]`` bool.
* Shapes are static. A detection MediaPipe would drop stays in its slot with
  ``valid = False``; its other fields are unspecified and must be ignored.
  :func:`count` gives the number of valid detections.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["Detections", "count", "to_pixels", "to_xywh", "from_xywh"]


class Detections(NamedTuple):
  """Detections with static shapes; see the module docstring for the convention.

  Attributes:
    boxes: ``[..., N, 4]`` float, ``[xmin, ymin, xmax, ymax]``.
    keypoints: ``[..., N, K, 2]`` float, ``(x, y)``; ``K`` may be 0.
    scores: ``[..., N]`` float.
    classes: ``[..., N]`` int32 class ids (``label_id``).
    valid: ``[..., N]`` bool; ``False`` marks slots MediaPipe would not emit.
  """

  boxes: jax.Array
  keypoints: jax.Array
  scores: jax.Array
  classes: jax.Array
  valid: jax.Array


def count(detections: Detections) -> jax.Array:
  """Number of valid detections, ``[...]`` int32."""
  return jnp.sum(detections.valid, axis=-1, dtype=jnp.int32)


def to_xywh(boxes: ArrayLike) -> jax.Array:
  """``[..., 4]`` ``[xmin, ymin, xmax, ymax]`` to MediaPipe's ``[xmin, ymin, width, height]``."""
  boxes = jnp.asarray(boxes)
  return jnp.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], axis=-1)


def from_xywh(boxes: ArrayLike) -> jax.Array:
  """MediaPipe's ``[xmin, ymin, width, height]`` to ``[xmin, ymin, xmax, ymax]``."""
  boxes = jnp.asarray(boxes)
  return jnp.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)


def to_pixels(detections: Detections, *, width: ArrayLike, height: ArrayLike) -> Detections:
  """Scales normalised boxes and keypoints by an image size in pixels.

  ``width`` and ``height`` may be scalars or arrays broadcastable against the
  leading batch dimensions (one size per image).

  Examples:
    >>> import jax.numpy as jnp
    >>> d = Detections(jnp.array([[0.25, 0.5, 0.75, 1.0]]), jnp.zeros((1, 0, 2)),
    ...                jnp.ones(1), jnp.zeros(1, jnp.int32), jnp.ones(1, bool))
    >>> to_pixels(d, width=640, height=480).boxes.tolist()
    [[160.0, 240.0, 480.0, 480.0]]
  """
  w = jnp.asarray(width, detections.boxes.dtype)
  h = jnp.asarray(height, detections.boxes.dtype)
  # Broadcast a per-image size over the detection (and keypoint) axes.
  wb, hb = w[..., None, None], h[..., None, None]
  scale_box = jnp.concatenate([wb, hb, wb, hb], axis=-1) if w.ndim else jnp.stack([w, h, w, h])
  scale_kp = jnp.concatenate([wb, hb], axis=-1)[..., None, :] if w.ndim else jnp.stack([w, h])
  return detections._replace(boxes=detections.boxes * scale_box,
                             keypoints=detections.keypoints * scale_kp)
