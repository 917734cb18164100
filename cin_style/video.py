"""Stylize video files frame by frame: one network, any style, real time on a GPU.

Reading and writing go through PyAV (``pip install "cin-style[video]"``), whose wheels ship
their own FFmpeg. The frame rate and size are kept; audio is dropped. Frames are stylized in
batches. With ``to_style`` the style blends linearly from ``style`` to ``to_style`` over the
clip (a style schedule).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .api import StyleModel
from .files import atomic_path
from .styles import StyleSpec

__all__ = ["VideoStats", "stylize_video", "write_video", "read_video_info"]


@dataclass
class VideoStats:
    frames: int
    width: int
    height: int
    rate: Fraction
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def _av():
    try:
        import av
    except ImportError:
        raise RuntimeError('video needs PyAV: pip install "cin-style[video]" (or pip install av)') from None
    return av


def read_video_info(path: str | os.PathLike) -> tuple[int, int, Fraction, int]:
    """(width, height, frame rate, frame count) of a video file's first video stream."""
    av = _av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.width, stream.codec_context.height, stream.average_rate, frames


def write_video(frames: list[np.ndarray], path: str | os.PathLike, *, rate: Fraction | int = 24) -> None:
    """Write RGB uint8 frames (H, W, 3) as H.264 (even sizes) or MPEG-4 video."""
    av = _av()
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        stream = _video_stream(out, w, h, Fraction(rate))
        for arr in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        out.mux(stream.encode())


def _video_stream(container, width: int, height: int, rate: Fraction):
    # H.264 with yuv420p needs even sizes; MPEG-4 part 2 takes any size.
    codec = "libx264" if width % 2 == 0 and height % 2 == 0 else "mpeg4"
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": "18", "preset": "medium"}
    else:
        stream.bit_rate = max(2_000_000, width * height * 8)
    return stream


def stylize_video(
    model: StyleModel,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    style: StyleSpec,
    *,
    to_style: StyleSpec | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> VideoStats:
    """Stylize every frame of ``src`` into ``dst`` (written atomically); return frame statistics."""
    av = _av()
    src, dst = Path(src), Path(dst)
    start_w = model.weights(style)
    end_w = model.weights(to_style) if to_style is not None else start_w
    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, OSError) as err:
        raise ValueError(f"{src}: cannot open video ({err})") from None
    t0 = time.perf_counter()
    count = 0
    with container, atomic_path(dst) as tmp:
        if not container.streams.video:
            raise ValueError(f"{src}: no video stream")
        stream = container.streams.video[0]
        total = stream.frames or None
        rate = stream.average_rate or Fraction(24)
        w, h = stream.codec_context.width, stream.codec_context.height
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="frame", desc=src.name, disable=not progress)
        with av.open(str(tmp), mode="w") as out:
            out_stream = _video_stream(out, w, h, rate)
            batch: list[np.ndarray] = []

            def flush() -> None:
                nonlocal count
                if not batch:
                    return
                x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div_(255)
                n = len(batch)
                if to_style is None:
                    weights = start_w.expand(n, -1)
                else:  # linear schedule over the clip, by frame index
                    denom = max(1, (total or 1) - 1)
                    t = torch.tensor([min(1.0, (count + i) / denom) for i in range(n)])[:, None]
                    weights = (1 - t) * start_w + t * end_w
                y = model.stylize_tensor(x, weights)
                frames = y.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                for arr in frames:
                    out.mux(out_stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
                count += n
                bar.update(n)
                batch.clear()

            for frame in container.decode(stream):
                batch.append(frame.to_ndarray(format="rgb24"))
                if len(batch) >= batch_size:
                    flush()
            flush()
            out.mux(out_stream.encode())
        bar.close()
        if count == 0:
            raise ValueError(f"{src}: no frames")
    return VideoStats(count, w, h, Fraction(rate), time.perf_counter() - t0)
