"""A request body turned into the network's input, off the event loop, within a deadline.

``POST /predict`` accepts a multipart upload (any file part), a raw image body, or JSON
``{"image": "<base64 or data: URL>"}``. The event loop only receives the bytes (and lets
Starlette split a multipart body); parsing JSON, base64 and decoding the image all run in the
decode pool, so a slow body (a large image, a pixel bomb under the limit, a 10 MB JSON string)
delays only its own request, never ``/healthz`` or the batcher. A job that waited in the pool
past its request's deadline is dropped without being decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass

import numpy as np
from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

from .model import ImageTooLarge, NotAnImage, RunModel


@dataclass(frozen=True)
class Body:
    """What a request sent, still undecoded: bytes, and whether they are JSON."""

    data: bytes
    is_json: bool


async def read_body(request: Request) -> Body:
    """The request's image part, whichever of the three body forms it came in."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise HTTPException(422, "multipart body has no file part")
        return Body(await uploads[0].read(), is_json=False)
    is_json = content_type.startswith("application/json") or content_type.endswith("+json")
    return Body(await request.body(), is_json=is_json)


def json_image(body: bytes) -> bytes:
    """The image bytes of a JSON body ``{"image": "<base64>"}`` (a data URL works too)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise HTTPException(422, f"malformed JSON: {error}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
        raise HTTPException(422, 'JSON body must be {"image": "<base64>"}')
    text = payload["image"]
    if text.startswith("data:") and "," in text:  # a data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, "malformed base64 in 'image'") from None


class DeadlinePassed(Exception):
    """The request's deadline passed while its body waited for a decode worker."""


def decode_body(model: RunModel, body: Body, deadline: float) -> np.ndarray:
    """Body -> float32 ``(C, H, W)``; runs in the decode pool. HTTP errors for bad bodies."""
    if time.monotonic() > deadline:
        raise DeadlinePassed
    data = json_image(body.data) if body.is_json else body.data
    try:
        return model.preprocess(data)
    except NotAnImage as error:
        raise HTTPException(415, str(error)) from None
    except ImageTooLarge as error:
        raise HTTPException(413, str(error)) from None
