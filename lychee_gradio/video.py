"""Video documents: decoding a clip (PyAV, FFmpeg's decoders) into the frames the model sees, under the limits.

The sampling rule (docs/design.md, "Video"), so that anyone can reproduce a score:

1. the clip's duration `D` (seconds) from its header (a clip without one is decoded to its end);
2. target times at 1 frame per second from the start, `0, 1, 2, ...` up to `D`; when that is more than
   `MAX_FRAMES` (64), `MAX_FRAMES` targets evenly spaced from 0 to the last whole second instead;
3. for each target, the first decoded frame whose timestamp is at or after it (the last frame for a target
   past the end); the same frame may serve two targets of a very short clip;
4. an even number of frames (the model's temporal patch is 2 frames): an odd count repeats the last frame;
   at least 2;
5. each frame as RGB, scaled by FFmpeg in the conversion (bicubic) to at most the model's pixel bound; the
   processor's video path then resizes each to its grid.

Limits, checked before decoding where the header allows: the file's bytes (`max_video_bytes`), its
duration (`max_video_seconds`); while decoding, every kept frame counts against the request's decoded-pixel
limit. A file that is not a video, or is cut short, is refused naming the field, never with a server path.

Torch-free. Needs PyAV (`pip install -e '.[video]'`); without it a video is refused with that advice.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any, Callable

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
               max_bytes: int | None = None, max_frame_pixels: int | None = None, budget=None,
               admit: Callable[[int, int, int], None] | None = None) -> Video:
    """A clip (a path, bytes, or a `Video` already sampled) as the rule's frames; `InputError`s name `field_name`.
    Before decoding: its bytes, its duration and its frame size (`max_frame_pixels`) from the header, and
    `admit(width, height, frames)` (the request's share of the image memory pool for what it will keep).
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
        streams = list(container.streams.video)
        if not streams:
            raise InputError(field_name, "video_decode")
        stream = streams[0]
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        if max_frame_pixels is not None and width * height > max_frame_pixels:
            raise InputError(field_name, "video_pixels", width=width, height=height, pixels=width * height,
                             limit=max_frame_pixels)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = DECODE_THREADS
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        if duration is not None and max_seconds is not None and duration > max_seconds:
            raise InputError(field_name, "video_seconds", seconds=round(duration, 1), limit=max_seconds)
        if admit is not None and width and height:
            admit(width, height, len(targets_for(duration)) + 1 if duration is not None else MAX_FRAMES)
        reader = _Reader(stream, fps, field_name, keep_pixels, max_seconds, max_frame_pixels, budget)
        try:
            if duration is not None and duration > SEEK_AFTER_SECONDS:
                reader.seeking(container, targets_for(duration))
            else:
                reader.in_order(container, targets_for(duration) if duration is not None else None)
        except av.FFmpegError:
            if not reader.frames:
                raise InputError(field_name, "video_decode") from None
    frames, times, indices = reader.frames, reader.times, reader.indices
    if not frames:
        raise InputError(field_name, "video_decode")
    last = times[-1]
    if duration is not None and duration - last > max(1.0, 2 / (fps or 1)):
        raise InputError(field_name, "video_truncated", seconds=round(last, 1), stated=round(duration, 1))
    if duration is None and len(frames) > MAX_FRAMES:  # no stated duration: 64 evenly spaced among those kept
        keep = [round(k * (len(frames) - 1) / (MAX_FRAMES - 1)) for k in range(MAX_FRAMES)]
        frames, times, indices = [frames[k] for k in keep], [times[k] for k in keep], [indices[k] for k in keep]
    if len(frames) % 2:
        frames, times, indices = frames + [frames[-1]], times + [times[-1]], indices + [indices[-1]]
    return Video(tuple(frames), tuple(times), tuple(indices), fps or (len(frames) / max(last, 1.0)),
                 duration if duration is not None else last)


DECODE_THREADS = 2  # FFmpeg's threads per clip: one request's decoding never takes every core
SEEK_AFTER_SECONDS = 64.0  # longer clips seek to each target instead of decoding every frame


class _Reader:
    """Decodes a clip's frames and keeps those the rule samples."""

    def __init__(self, stream, fps, field_name, keep_pixels, max_seconds, max_frame_pixels, budget):
        self.stream, self.fps, self.field = stream, fps, field_name
        self.keep_pixels, self.max_seconds, self.max_frame_pixels, self.budget = (
            keep_pixels, max_seconds, max_frame_pixels, budget)
        self.base = stream.time_base
        self.start = float(stream.start_time * self.base) if stream.start_time is not None and self.base else 0.0
        self.frames: list[Image.Image] = []
        self.times: list[float] = []
        self.indices: list[int] = []

    def _time(self, frame, index: int) -> float:
        if frame.pts is not None and self.base is not None:
            return float(frame.pts * self.base) - self.start
        return index / (self.fps or 1.0)

    def _check(self, frame, time: float) -> None:
        if self.budget is not None and self.budget.check is not None:
            self.budget.check()  # the request's deadline and Stop, between frames
        if self.max_seconds is not None and time > self.max_seconds:
            raise InputError(self.field, "video_seconds", seconds=round(time, 1), limit=self.max_seconds)
        if self.max_frame_pixels is not None and frame.width * frame.height > self.max_frame_pixels:
            raise InputError(self.field, "video_pixels", width=frame.width, height=frame.height,
                             pixels=frame.width * frame.height, limit=self.max_frame_pixels)

    def keep(self, frame, time: float, index: int) -> None:
        width, height = frame.width, frame.height
        if self.keep_pixels is not None and width * height > self.keep_pixels:
            factor = math.sqrt(width * height / self.keep_pixels)
            width, height = max(1, int(width / factor)), max(1, int(height / factor))
        # Converted and scaled by FFmpeg in one step: the full-size RGB frame is never made.
        image = frame.reformat(width=width, height=height, format="rgb24",
                               interpolation="BICUBIC").to_image()
        if self.budget is not None:
            self.budget.take(image, self.field)
        self.frames.append(image)
        self.times.append(time)
        self.indices.append(index)

    def in_order(self, container, targets: list[float] | None) -> None:
        """Every frame in order; for each target the first at or after it. Without targets (no stated duration)
        one per second, thinned to every other one whenever more than 4 × 64 are kept."""
        last = None
        step, next_time = 1.0, 0.0
        for index, frame in enumerate(container.decode(self.stream)):
            time = self._time(frame, index)
            self._check(frame, time)
            if targets is not None:
                while len(self.frames) < len(targets) and time + 1e-6 >= targets[len(self.frames)]:
                    self.keep(frame, time, index)
                if len(self.frames) >= len(targets):
                    return
            elif time + 1e-6 >= next_time:
                self.keep(frame, time, index)
                next_time += step
                if len(self.frames) > 4 * MAX_FRAMES:
                    self.frames, self.times, self.indices = self.frames[::2], self.times[::2], self.indices[::2]
                    step *= 2
                    next_time = self.times[-1] + step
            last = (frame, time, index)
        if targets is not None and last is not None and len(self.frames) < len(targets):
            frame, time, index = last  # targets past the last frame: the last frame
            if not self.times or self.times[-1] != time:
                self.keep(frame, time, index)

    def seeking(self, container, targets: list[float]) -> None:
        """For each target, a seek to the key frame before it and a decode forward to the first frame at or after
        it: a long clip costs 64 short decodes, not all of its frames."""
        last = None
        for target in targets:
            container.seek(int((target + self.start) / self.base), stream=self.stream, backward=True, any_frame=False)
            found = None
            for frame in container.decode(self.stream):
                time = self._time(frame, 0)
                self._check(frame, time)
                last = (frame, time)
                if time + 1e-6 >= target:
                    found = (frame, time)
                    break
            if found is None:
                break  # the end: the last frame stands for what is left
            frame, time = found
            self.keep(frame, time, round(time * (self.fps or 1.0)))
        if last is not None and len(self.frames) < len(targets):
            frame, time = last
            if not self.times or self.times[-1] != time:
                self.keep(frame, time, round(time * (self.fps or 1.0)))
