"""Stylize video files frame by frame: one network, any style, real time on a GPU.

Reading and writing go through PyAV (``pip install "cin-style[video]"``), whose wheels ship
their own FFmpeg. The frame rate and size are kept; audio is dropped. Frames are stylized in
batches. With ``to_style`` the style blends linearly from ``style`` to ``to_style`` over the
clip (a style schedule).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from cin_style.inference.style_model import StyleModel
from cin_style.io.files import atomic_path
from cin_style.io.images import to_uint8
from cin_style.inference.strokes import DEFAULT_STROKE, NATIVE
from cin_style.network.styles import StyleSpec

__all__ = ["VideoStats", "PHASES", "phase_shifts", "flicker", "warping_error", "phase_averaged", "stylize_frames", "stylize_video", "write_video", "read_video_info"]


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


#: The passes ``phases`` may ask for: 1 (off), 4 (2 shifts per axis) or 16 (every shift of the network's stride of 4).
PHASES = (1, 4, 16)


def _check_phases(phases: int) -> None:
    if phases not in PHASES:
        raise ValueError(f"phases must be 1, 4 or 16, got {phases}")


def phase_shifts(phases: int, stride: int) -> tuple[int, ...]:
    """The sub-stride shifts (per axis) averaged for ``phases`` passes, on a network of ``stride``
    (its :attr:`~cin_style.network.transformer.StyleTransformer.size_multiple`): evenly spaced over one stride."""
    per_axis = round(phases**0.5)
    return tuple(range(0, stride, max(1, stride // per_axis)))[:per_axis]


def phase_averaged(model: StyleModel, x: torch.Tensor, weights: torch.Tensor, phases: int) -> torch.Tensor:
    """The network's output averaged over shifts of the input by 0-3 pixels (its stride is 4).

    Two stride-2 convolutions make the network see a photo differently when it moves by a
    pixel or two: the strokes are laid on a 4-pixel grid that does not move with the picture,
    so a slow pan makes the texture "boil". Averaging the outputs for every sub-stride shift
    (16 passes; 4 for a 2-pixel grid) makes the result nearly shift-equivariant: the strokes
    move with the scene. The price is that many passes, and slightly softer strokes.
    The network runs at the size of ``x``: :func:`stylize_frames` shrinks frames to the working
    size of their stroke factor first, so that the shifts are the network's own pixels.
    """
    _check_phases(phases)
    if phases == 1:
        return model.stylize_tensor(x, weights, stroke=NATIVE)
    h, w = x.shape[-2:]
    stride = model.transformer.size_multiple
    mode = "reflect" if min(h, w) > stride - 1 else "replicate"  # a reflection must be narrower than the side it mirrors
    total = None
    shifts = phase_shifts(phases, stride)
    for dy in shifts:
        for dx in shifts:
            # The same padded size for every shift (one stride less one pixel more), so that only the phase changes.
            shifted = torch.nn.functional.pad(x, (dx, stride - 1 - dx, dy, stride - 1 - dy), mode=mode)
            y = model.stylize_tensor(shifted, weights, stroke=NATIVE)[..., dy : dy + h, dx : dx + w]
            total = y if total is None else total + y
    return total / phases


def stylize_frames(
    model: StyleModel,
    frames: Iterable[np.ndarray],
    weights_at: Callable[[int], torch.Tensor],
    *,
    phases: int = 1,
    batch_size: int = 8,
    stroke: float | str = DEFAULT_STROKE,
) -> Iterator[np.ndarray]:
    """Stylize RGB uint8 frames (H, W, 3) in order; ``weights_at(i)`` gives frame i's style weights (N,).

    ``phases`` > 1 averages sub-stride shifts against flicker (see :func:`phase_averaged`);
    ``stroke`` as for :meth:`cin_style.inference.style_model.StyleModel.stylize` (each frame painted at its working size).
    """
    stroke = model.check_stroke(stroke)
    _check_phases(phases)
    batch: list[np.ndarray] = []
    count = 0

    def flush() -> Iterator[np.ndarray]:
        nonlocal count
        n = len(batch)
        weights = [weights_at(count + i) for i in range(n)]
        if model.engine.fixed_batch and n < batch_size:
            # A compiled graph is specialised to its batch size: pad the last batch rather than compile another.
            batch.extend([batch[-1]] * (batch_size - n))
            weights.extend([weights[-1]] * (batch_size - n))
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div_(255)
        y = model.paint_at_stroke(x, torch.stack(weights), lambda small, w: phase_averaged(model, small, w, phases), stroke=stroke)[:n]
        count += n
        batch.clear()
        yield from to_uint8(y).permute(0, 2, 3, 1).cpu().numpy()

    for frame in frames:
        batch.append(frame)
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def flicker(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """Mean absolute difference between consecutive output frames over the same for the input frames."""
    def mad(frames: list[np.ndarray]) -> float:
        return float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() for a, b in zip(frames, frames[1:])]))

    return mad(outputs) / mad(inputs)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise RuntimeError('the warping error needs OpenCV: pip install "cin-style[video]" (or pip install opencv-python-headless)') from None
    return cv2


def warping_error(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """The warping error of Lai et al. (ECCV 2018, "Learning Blind Video Temporal Consistency").

    For each pair of consecutive frames: the optical flow from frame t back to frame t-1 of the
    *input* clip (OpenCV's DIS flow, medium preset; nothing is downloaded), the previous *output*
    frame warped along it, and the mean squared difference to the current output frame over the
    pixels that are not occluded (forward-backward check of Sundaram et al. 2010: the backward
    flow and the forward flow at the point it leads to must cancel, and the point must lie in the
    frame). Frames are (H, W, 3) uint8; differences are taken in [0, 1]. Averaged over the clip.
    A network that moves exactly with its input scores 0; one that repaints every frame anew
    scores high.
    """
    cv2 = _cv2()
    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise ValueError(f"need the same number (at least 2) of input and output frames, got {len(inputs)} and {len(outputs)}")
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in inputs]
    h, w = gray[0].shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    errors = []
    for t in range(1, len(inputs)):
        back = dis.calc(gray[t], gray[t - 1], None)  # inputs[t](p) ~ inputs[t-1](p + back(p))
        fwd = dis.calc(gray[t - 1], gray[t], None)
        map_x, map_y = xs + back[..., 0], ys + back[..., 1]
        fwd_there = cv2.remap(fwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mismatch = ((back + fwd_there) ** 2).sum(-1)
        consistent = mismatch < 0.01 * ((back**2).sum(-1) + (fwd_there**2).sum(-1)) + 0.5
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        mask = consistent & inside
        warped = cv2.remap(outputs[t - 1].astype(np.float32) / 255, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        diff = ((outputs[t].astype(np.float32) / 255 - warped) ** 2).sum(-1)
        errors.append(float(diff[mask].mean()) if mask.any() else 0.0)
    return float(np.mean(errors))


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


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, *, rate: Fraction | int = 24) -> int:
    """Write RGB uint8 frames (H, W, 3) as H.264 (even sizes) or MPEG-4 video, as they come
    (frames may be a generator); return how many. No frames: no file, and 0."""
    av = _av()
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return 0
    count = 0
    with av.open(str(path), mode="w") as out:
        stream = _video_stream(out, first.shape[1], first.shape[0], Fraction(rate))
        for arr in itertools.chain([first], frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
            count += 1
        out.mux(stream.encode())
    return count


def _counted(frames: Iterable[np.ndarray], step: Callable[[int], object]) -> Iterator[np.ndarray]:
    """The frames, calling ``step(1)`` after each (a progress bar's update)."""
    for frame in frames:
        yield frame
        step(1)


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
    phases: int = 1,
    stroke: float | str = DEFAULT_STROKE,
    progress: bool = True,
) -> VideoStats:
    """Stylize every frame of ``src`` into ``dst`` (written atomically); return frame statistics.

    ``phases`` = 4 or 16 reduces flicker at 4 or 16 times the work (see :func:`phase_averaged`);
    ``stroke`` as for :meth:`cin_style.inference.style_model.StyleModel.stylize`.
    """
    stroke = model.check_stroke(stroke)
    av = _av()
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    start_w = model.weights(style)
    end_w = model.weights(to_style) if to_style is not None else start_w
    _check_phases(phases)
    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, OSError) as err:
        raise ValueError(f"{src}: cannot open video ({err})") from None
    t0 = time.perf_counter()
    with container, atomic_path(dst) as tmp:
        if not container.streams.video:
            raise ValueError(f"{src}: no video stream")
        stream = container.streams.video[0]
        total = stream.frames or None
        rate = stream.average_rate or Fraction(24)
        w, h = stream.codec_context.width, stream.codec_context.height
        from tqdm.auto import tqdm

        def weights_at(i: int) -> torch.Tensor:
            if to_style is None:
                return start_w
            t = min(1.0, i / max(1, (total or 1) - 1))  # linear schedule over the clip, by frame index
            return (1 - t) * start_w + t * end_w

        frames = (frame.to_ndarray(format="rgb24") for frame in container.decode(stream))
        with tqdm(total=total, unit="frame", desc=src.name, disable=not progress) as bar:
            painted = stylize_frames(model, frames, weights_at, phases=phases, batch_size=batch_size, stroke=stroke)
            count = write_video(_counted(painted, bar.update), tmp, rate=rate)
        if count == 0:
            raise ValueError(f"{src}: no frames")
    return VideoStats(count, w, h, Fraction(rate), time.perf_counter() - t0)
