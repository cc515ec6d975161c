"""Video documents: decoding a clip (PyAV, FFmpeg's decoders) into the frames the model sees, under the limits.

The sampling rule (docs/design.md, "Video"), so that anyone can reproduce a score:

1. the clip's duration `D` (seconds) from its header (a clip without one is decoded to its end);
2. target times at 1 frame per second from the start, `0, 1, 2, ...` up to `D`; when that is more than
   `MAX_FRAMES` (64), `MAX_FRAMES` targets evenly spaced from 0 to the last whole second instead;
3. for each target, the first decoded frame whose timestamp is at or after it (the last frame for a target
   past the end); the same frame may serve two targets of a very short clip;
4. an even number of frames (the model's temporal patch is 2 frames): an odd count repeats the last frame;
   at least 2;
5. each frame as RGB, decoded straight to at most the model's pixel bound (resized by a whole factor,
   like large images); the processor's video path then resizes each to its grid.

Limits, checked before decoding where the header allows: the file's bytes (`max_video_bytes`), its
duration (`max_video_seconds`); while decoding, every kept frame counts against the request's decoded-pixel
limit. A file that is not a video, or is cut short, is refused naming the field, never with a server path.

Torch-free. Needs PyAV (`pip install -e '.[video]'`); without it a video is refused with that advice.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

from PIL import Image

from .contract import InputError, Video

FPS = 1.0
MAX_FRAMES = 64
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")


def targets_for(duration: float) -> list[float]:
    """The times the rule samples at, for a clip of `duration` seconds."""
    last = max(0, math.floor(duration + 1e-9))
    if last + 1 <= MAX_FRAMES:
        return [float(t) for t in range(last + 1)]
    return [last * k / (MAX_FRAMES - 1) for k in range(MAX_FRAMES)]


def _source(value: Any, field_name: str, max_bytes: int | None):
    if isinstance(value, Video):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if not data:
            raise InputError(field_name, "video_empty")
        if max_bytes is not None and len(data) > max_bytes:
            raise InputError(field_name, "video_bytes", limit=max_bytes)
        return io.BytesIO(data)
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.isfile(path):
            raise InputError(field_name, "video_not_found", path=path)
        if max_bytes is not None and os.path.getsize(path) > max_bytes:
            raise InputError(field_name, "video_bytes", limit=max_bytes)
        return path
    raise InputError(field_name, "video_type", type=type(value).__name__)


def load_video(value: Any, field_name: str, *, keep_pixels: int | None = None, max_seconds: float | None = None,
               max_bytes: int | None = None, budget=None) -> Video:
    """A clip (a path, bytes, or a `Video` already sampled) as the rule's frames; `InputError`s name `field_name`.
    `budget`: the request's `inputs.PixelBudget` (each kept frame counts; its deadline checked between frames)."""
    if isinstance(value, Video):
        for frame in value.frames:
            if budget is not None:
                budget.take(frame, field_name)
        return value
    source = _source(value, field_name, max_bytes)
    try:
        import av
    except ImportError:
        raise InputError(field_name, "video_unavailable") from None
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        raise InputError(field_name, "video_decode") from None
    with container:
        streams = [stream for stream in container.streams.video]
        if not streams:
            raise InputError(field_name, "video_decode")
        stream = streams[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        if duration is not None and max_seconds is not None and duration > max_seconds:
            raise InputError(field_name, "video_seconds", seconds=round(duration, 1), limit=max_seconds)
        if duration is not None and stream.frames and fps:
            duration = max(duration, 0.0)
        frames, times, indices = _decode(container, stream, duration, field_name, keep_pixels, max_seconds, budget)
    if not frames:
        raise InputError(field_name, "video_decode")
    last = times[-1]
    if duration is not None and duration - last > max(1.0, 2 / (fps or 1)):
        raise InputError(field_name, "video_truncated", seconds=round(last, 1), stated=round(duration, 1))
    if len(frames) % 2:
        frames, times, indices = frames + [frames[-1]], times + [times[-1]], indices + [indices[-1]]
    return Video(tuple(frames), tuple(times), tuple(indices), fps or (len(frames) / max(last, 1.0)),
                 duration if duration is not None else last)


def _decode(container, stream, duration, field_name, keep_pixels, max_seconds, budget):
    import av

    start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    wanted = targets_for(duration) if duration is not None else None
    frames: list[Image.Image] = []
    times: list[float] = []
    indices: list[int] = []
    previous = None
    next_target = 0.0
    try:
        for index, frame in enumerate(container.decode(stream)):
            if budget is not None and budget.check is not None:
                budget.check()
            time = (float(frame.pts * stream.time_base) - start) if frame.pts is not None else index / (
                float(stream.average_rate or 1))
            if max_seconds is not None and time > max_seconds:
                raise InputError(field_name, "video_seconds", seconds=round(time, 1), limit=max_seconds)
            targets = wanted if wanted is not None else None
            while True:
                target = targets[len(frames)] if targets is not None and len(frames) < len(targets) else (
                    next_target if targets is None else None)
                if target is None or time + 1e-6 < target:
                    break
                frames.append(_rgb(frame, keep_pixels, field_name, budget))
                times.append(time)
                indices.append(index)
                next_target += 1.0
            previous = (frame, time, index)
            if targets is not None and len(frames) >= len(targets):
                break
            if targets is None and len(frames) > MAX_FRAMES * 4:
                raise InputError(field_name, "video_seconds", seconds=round(time, 1), limit=max_seconds or 0)
    except av.FFmpegError:
        if not frames:
            raise InputError(field_name, "video_decode") from None
    if wanted is not None and previous is not None and len(frames) < len(wanted):
        frame, time, index = previous  # targets past the last frame: the last frame
        if not times or times[-1] != time:
            frames.append(_rgb(frame, keep_pixels, field_name, budget))
            times.append(time)
            indices.append(index)
    if wanted is None and len(frames) > MAX_FRAMES:
        keep = [round(k * (len(frames) - 1) / (MAX_FRAMES - 1)) for k in range(MAX_FRAMES)]
        frames, times, indices = [frames[k] for k in keep], [times[k] for k in keep], [indices[k] for k in keep]
    return frames, times, indices


def _rgb(frame, keep_pixels, field_name, budget) -> Image.Image:
    image = frame.to_image()
    if image.mode != "RGB":
        image = image.convert("RGB")
    if keep_pixels is not None and image.width * image.height > keep_pixels:
        factor = math.sqrt(image.width * image.height / keep_pixels)
        image = image.resize((max(1, int(image.width / factor)), max(1, int(image.height / factor))),
                             Image.Resampling.BICUBIC)
    if budget is not None:
        budget.take(image, field_name)
    return image
