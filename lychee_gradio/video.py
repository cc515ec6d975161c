"""Video documents: decoding a clip (PyAV, FFmpeg's decoders) into the frames the model sees, under the limits.

The sampling rule (docs/design.md, "Video"), so that anyone can reproduce a score:

1. the clip's duration `D` (seconds) from its header (a clip without one is decoded to its end);
2. target times at 1 frame per second from the start, `0, 1, 2, ...` up to `D`; when that is more than
   `MAX_FRAMES` (64), `MAX_FRAMES` targets evenly spaced from 0 to the last whole second instead (a request's
   `long_documents: "truncate"`), or by default all of them, for the clip's segments of 64 frames (parts.py);
3. for each target, the first decoded frame whose timestamp is at or after it (the last frame for a target
   past the end); the same frame may serve two targets of a very short clip;
4. an even number of frames (the model's temporal patch is 2 frames): an odd count repeats the last frame;
   at least 2;
5. each frame as RGB, scaled by FFmpeg in the conversion (bicubic) to at most the model's pixel bound; the
   processor's video path then resizes each to its grid.

A clip is opened as a clip and nothing else: its container is told by its first bytes (MP4/MOV, WebM/Matroska,
AVI: `CONTAINERS`), FFmpeg is given that one demuxer and the caller's bytes through PyAV's own reader, with no
protocol for anything the file names; playlists, concat lists and stream descriptions (which would make FFmpeg
read server files or open sockets) are refused before FFmpeg sees them.

Limits, checked before decoding from the header: the file's bytes (`max_video_bytes`), its duration
(`max_video_seconds`), its frame size; the memory its kept frames will hold is taken from the header (by the
request, with its images, before anything is decoded: `inputs.admit_images`), and while decoding a frame larger
than the header said, or more frames than it was taken for, is refused; every kept frame counts against the
request's decoded-pixel limit, and the request's deadline is checked between frames. A file that is not a
video, or is cut short, is refused naming the field, never with a server path.

Torch-free. Needs PyAV (a dependency of the app); without it a video is refused with that advice.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .contract import InputError, Video

FPS = 1.0
MAX_FRAMES = 64
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")


def targets_for(duration: float, segments: bool = False) -> list[float]:
    """The times the rule samples at, for a clip of `duration` seconds; with `segments` (a long clip scored as
    consecutive segments of `MAX_FRAMES` frames: parts.py) one a second all the way."""
    last = max(0, math.floor(duration + 1e-9))
    if last + 1 <= MAX_FRAMES or segments:
        return [float(t) for t in range(last + 1)]
    return [last * k / (MAX_FRAMES - 1) for k in range(MAX_FRAMES)]


# The containers a clip may come in, by their first bytes, and the one FFmpeg demuxer each is opened with. These
# are what cameras, phones, browsers and editors write (MP4/MOV: ISO base media; WebM/MKV: Matroska; AVI: RIFF).
# Nothing else is opened: FFmpeg's other demuxers include playlists and descriptions that name other files or
# network addresses (ffconcat, HLS, DASH, SDP, image2 patterns), which a caller's bytes must never make it open.
CONTAINERS = {"mov": "MP4/MOV", "matroska": "WebM/Matroska", "avi": "AVI"}
# Top-level boxes an ISO/QuickTime file may start with (ISO 14496-12; old QuickTime files start with moov/mdat).
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
# Options for the demuxer: no protocol at all for anything the file names (the caller's bytes come through
# PyAV's own reader, which needs none); MP4's external data references off (FFmpeg's default, said anyway).
_OPEN_OPTIONS = {"protocol_whitelist": "none"}
_DEMUXER_OPTIONS = {"mov": {"enable_drefs": "0", "use_absolute_path": "0"}, "matroska": {}, "avi": {}}


def container_of(head: bytes) -> str | None:
    """The FFmpeg demuxer for a clip whose file starts with `head` (16 bytes are enough), or None."""
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    return None


def _source(value: Any, field_name: str, max_bytes: int | None) -> tuple[io.BufferedIOBase, str]:
    """The caller's clip as a file object PyAV reads through its own reader (never a path FFmpeg opens), and the
    demuxer its first bytes call for."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if not data:
            raise InputError(field_name, "video_empty")
        if max_bytes is not None and len(data) > max_bytes:
            raise InputError(field_name, "video_bytes", limit=max_bytes)
        source: Any = io.BytesIO(data)
    elif isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.isfile(path):
            raise InputError(field_name, "video_not_found", path=path)
        size = os.path.getsize(path)
        if size == 0:
            raise InputError(field_name, "video_empty")
        if max_bytes is not None and size > max_bytes:
            raise InputError(field_name, "video_bytes", limit=max_bytes)
        source = open(path, "rb")
    else:
        raise InputError(field_name, "video_type", type=type(value).__name__)
    head = source.read(16)
    source.seek(0)
    demuxer = container_of(head)
    if demuxer is None:
        source.close()
        raise InputError(field_name, "video_container")
    return source, demuxer


def _open(value: Any, field_name: str, max_bytes: int | None):
    """The clip opened with its one demuxer and no protocol: `(container, file)`, both to be closed."""
    source, demuxer = _source(value, field_name, max_bytes)
    try:
        import av
    except ImportError:
        source.close()
        raise InputError(field_name, "video_unavailable") from None
    try:
        container = av.open(
            source, mode="r", format=demuxer, metadata_errors="ignore", options={**_OPEN_OPTIONS, **_DEMUXER_OPTIONS[demuxer]}
        )
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        source.close()
        raise InputError(field_name, "video_decode") from None
    return container, source


@dataclass(frozen=True)
class Header:
    """What a clip's header says: its frame size, its duration (None: not stated) and how many frames the rule
    keeps of it at most while decoding (`frames`) and in the end (`kept`)."""

    width: int
    height: int
    duration: float | None
    frames: int
    kept: int


def _header(
    container, field_name: str, max_seconds: float | None, max_frame_pixels: int | None, segments: bool = False
) -> Header:
    streams = list(container.streams.video)
    if not streams:
        raise InputError(field_name, "video_decode")
    stream = streams[0]
    width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
    if width < 1 or height < 1:
        raise InputError(field_name, "video_no_size")
    if max_frame_pixels is not None and width * height > max_frame_pixels:
        raise InputError(field_name, "video_pixels", width=width, height=height, pixels=width * height, limit=max_frame_pixels)
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    if duration is not None and max_seconds is not None and duration > max_seconds:
        raise InputError(field_name, "video_seconds", seconds=round(duration, 1), limit=max_seconds)
    if duration is None:  # decoded to its end, thinned to every other frame past 2 x 64
        return Header(width, height, None, 2 * MAX_FRAMES + 1, MAX_FRAMES)
    count = len(targets_for(duration, segments))
    return Header(width, height, duration, count + 1, count + 1)


def video_header(
    value: Any,
    field_name: str,
    *,
    max_seconds: float | None = None,
    max_bytes: int | None = None,
    max_frame_pixels: int | None = None,
    segments: bool = False,
) -> Header:
    """A clip's `Header`, read without decoding a frame, under the same checks as `load_video`."""
    container, source = _open(value, field_name, max_bytes)
    with source, container:
        return _header(container, field_name, max_seconds, max_frame_pixels, segments)


def load_video(
    value: Any,
    field_name: str,
    *,
    keep_pixels: int | None = None,
    max_seconds: float | None = None,
    max_bytes: int | None = None,
    max_frame_pixels: int | None = None,
    budget=None,
    segments: bool = False,
) -> Video:
    """A clip (a path, bytes, or a `Video` already sampled) as the rule's frames; `InputError`s name `field_name`.
    Before decoding: its bytes, its duration and its frame size (`max_frame_pixels`) from the header (its memory was
    admitted with the request's images, from the same header: `inputs.admit_images`).
    `budget`: the request's `inputs.PixelBudget` (each kept frame counts; its deadline checked between frames).
    `segments`: a clip with a stated duration keeps one frame a second all the way (its segments are scored as
    clips of their own: parts.py), not 64 spread over it."""
    if isinstance(value, Video):
        for frame in value.frames:
            if budget is not None:
                budget.take(frame, field_name)
        return value
    container, source = _open(value, field_name, max_bytes)
    with source, container:
        header = _header(container, field_name, max_seconds, max_frame_pixels, segments)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = DECODE_THREADS
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        duration = header.duration
        reader = _Reader(stream, fps, field_name, keep_pixels, max_seconds, header, budget)
        try:
            if duration is not None and duration > SEEK_AFTER_SECONDS:
                reader.seeking(container, targets_for(duration, segments))
            else:
                reader.in_order(container, targets_for(duration, segments) if duration is not None else None)
        except av_errors():
            if not reader.frames:
                raise InputError(field_name, "video_decode") from None
    frames, times, indices = reader.frames, reader.times, reader.indices
    if not frames:
        raise InputError(field_name, "video_decode")
    last = times[-1]
    # Cut short: the last frame more than two frames' time (1 s at least, 5 s at most: a stated rate of 0.04 fps
    # must not pass one frame off as a clip) before the stated end.
    if duration is not None and duration - last > max(1.0, min(5.0, 2 / (fps or 1))):
        raise InputError(field_name, "video_truncated", seconds=round(last, 1), stated=round(duration, 1))
    if duration is None and len(frames) > MAX_FRAMES:  # no stated duration: 64 evenly spaced among those kept
        keep = [round(k * (len(frames) - 1) / (MAX_FRAMES - 1)) for k in range(MAX_FRAMES)]
        frames, times, indices = [frames[k] for k in keep], [times[k] for k in keep], [indices[k] for k in keep]
    if len(frames) % 2:
        frames, times, indices = frames + [frames[-1]], times + [times[-1]], indices + [indices[-1]]
    return Video(
        tuple(frames),
        tuple(times),
        tuple(indices),
        fps or (len(frames) / max(last, 1.0)),
        duration if duration is not None else last,
    )


def av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.FFmpegError,)


DECODE_THREADS = 2  # FFmpeg's threads per clip: one request's decoding never takes every core
SEEK_AFTER_SECONDS = 64.0  # longer clips seek to each target instead of decoding every frame


class _Reader:
    """Decodes a clip's frames and keeps those the rule samples."""

    def __init__(self, stream, fps, field_name, keep_pixels, max_seconds, header: Header, budget):
        self.stream, self.fps, self.field = stream, fps, field_name
        self.keep_pixels, self.max_seconds, self.header, self.budget = keep_pixels, max_seconds, header, budget
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
        header = self.header
        if frame.width * frame.height > header.width * header.height:
            # Its memory was taken from the header's size: a frame larger than the header says is refused, not kept.
            raise InputError(
                self.field, "video_frame_size", width=frame.width, height=frame.height, stated=f"{header.width}x{header.height}"
            )

    def keep(self, frame, time: float, index: int) -> None:
        if len(self.frames) >= self.header.frames:  # never more than the header's share of memory was taken for
            raise InputError(self.field, "video_decode")
        width, height = frame.width, frame.height
        if self.keep_pixels is not None and width * height > self.keep_pixels:
            factor = math.sqrt(width * height / self.keep_pixels)
            width, height = max(1, int(width / factor)), max(1, int(height / factor))
        # Converted and scaled by FFmpeg in one step: the full-size RGB frame is never made.
        image = frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC").to_image()
        if self.budget is not None:
            self.budget.take(image, self.field)
        self.frames.append(image)
        self.times.append(time)
        self.indices.append(index)

    def in_order(self, container, targets: list[float] | None) -> None:
        """Every frame in order; for each target the first at or after it. Without targets (no stated duration)
        one per second, thinned to every other one whenever 2 × 64 are kept."""
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
                if len(self.frames) >= 2 * MAX_FRAMES:
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
