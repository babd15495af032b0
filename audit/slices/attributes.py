"""Readable attributes of images that come with object masks (the bundled shapes, any .npz
with ``masks``), so that image slices can be searched as rules (``object_area < 0.08``) as well
as found as clusters of the model's embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.subject import AuditData

__all__ = ["image_attributes"]


def image_attributes(data: AuditData) -> pd.DataFrame | None:
    """Per image: the object's share of the pixels (``object_area``), its centre
    (``object_x``, ``object_y`` in [0, 1] from the left and top), the mean intensity of the
    object and of the background, and their difference (``contrast``); ``None`` without
    masks."""
    masks = data.extras.get("masks")
    if masks is None or data.kind != "image":
        return None
    m = np.asarray(masks, dtype=bool)
    x = data.x.numpy()
    gray = x.mean(axis=1) if x.ndim == 4 else x
    n, h, w = m.shape
    area = m.reshape(n, -1).sum(axis=1)
    safe = np.maximum(area, 1)
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    cy = (m * rows).reshape(n, -1).sum(axis=1) / safe / max(h - 1, 1)
    cx = (m * cols).reshape(n, -1).sum(axis=1) / safe / max(w - 1, 1)
    obj = (gray * m).reshape(n, -1).sum(axis=1) / safe
    rest = np.maximum(h * w - area, 1)
    bg = (gray * ~m).reshape(n, -1).sum(axis=1) / rest
    frame = pd.DataFrame({"object_area": area / (h * w), "object_x": cx, "object_y": cy,
                          "object_brightness": obj, "background_brightness": bg,
                          "contrast": np.abs(obj - bg)})
    frame.loc[area == 0, ["object_x", "object_y", "object_brightness", "contrast"]] = np.nan
    return frame.round(4)
