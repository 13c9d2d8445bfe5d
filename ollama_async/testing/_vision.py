"""Images in generate and chat requests: decoded as the real server does, counted as prompt tokens.

The real server binds ``images`` into ``[]byte`` fields, so each entry must be standard base64
(a ``data:`` URL or anything else is Go's ``illegal base64 data at input byte N``, a 400). A valid
image costs prompt tokens (a vision model's projector turns it into a fixed number of embeddings),
so ``prompt_eval_count`` shows that the image reached the model.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ._requests import ApiError

__all__ = ["IMAGE_TOKENS", "image_tokens"]

#: Prompt tokens one image adds (a small projector's patch count).
IMAGE_TOKENS = 64

_BASE64_CHAR = re.compile(rb"[^A-Za-z0-9+/=]")


def _check_image(value: Any) -> None:
    if not isinstance(value, str):
        kind = "number" if isinstance(value, (int, float)) else type(value).__name__
        raise ApiError(400, f"json: cannot unmarshal {kind} into Go value of type []uint8")
    data = value.encode("ascii", "replace")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        bad = _BASE64_CHAR.search(data)
        at = bad.start() if bad is not None else max(len(data) - 1, 0)
        raise ApiError(400, f"illegal base64 data at input byte {at}") from None


def image_tokens(images: Any) -> int:
    """Check a list of images (raise the real server's 400) and return the prompt tokens they add."""
    if not images:
        return 0
    if not isinstance(images, list):
        raise ApiError(400, "json: cannot unmarshal object into Go value of type []api.ImageData")
    for image in images:
        _check_image(image)
    return IMAGE_TOKENS * len(images)
