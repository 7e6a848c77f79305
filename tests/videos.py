"""Real video files for tests, made with PyAV from scikit-image's photographs
(a slow pan and zoom over each), and broken ones."""

from __future__ import annotations

import os
from typing import Dict, Iterator, List, Tuple

import numpy as np
from PIL import Image

from tests.images import photo

#: (name, photograph, frames, codec, container extension, frame rate)
VIDEOS: Tuple[Tuple[str, str, int, str, str, int], ...] = (
    ("astronaut_h264", "astronaut", 90, "libx264", "mp4", 30),
    ("coffee_mpeg4", "coffee", 60, "mpeg4", "mkv", 25),
    ("chelsea_mjpeg", "chelsea", 75, "mjpeg", "avi", 30),
)


def pan_zoom(name: str, n: int, size: Tuple[int, int] = (64, 48)) -> Iterator[np.ndarray]:
    """``n`` uint8 ``(H, W, 3)`` frames: a window that zooms in on the
    photograph ``name`` while panning across it."""
    img = Image.fromarray(photo(name)).convert("RGB")
    w, h = img.size
    for i in range(n):
        t = i / max(1, n - 1)
        scale = 1.0 - 0.5 * t  # the window shrinks to half the photo
        cw, ch = int(w * scale), int(h * scale)
        x0 = int((w - cw) * t)
        y0 = int((h - ch) * (0.5 + 0.5 * np.sin(2 * np.pi * t)) / 1.0 * 0.5)
        yield np.asarray(img.crop((x0, y0, x0 + cw, y0 + ch)).resize(size, Image.BILINEAR))


def write_video(path: str, frames: Iterator[np.ndarray], codec: str, rate: int = 30) -> str:
    """Encodes ``frames`` with PyAV into ``path`` (the container from its extension)."""
    import av

    with av.open(path, "w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=rate)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
                if codec == "libx264":
                    stream.options = {"preset": "ultrafast", "bf": "0"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        assert stream is not None
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_videos(root: str) -> Dict[str, str]:
    """The good videos of :data:`VIDEOS` under ``root``: ``{name: path}``."""
    os.makedirs(root, exist_ok=True)
    out = {}
    for name, source, n, codec, ext, rate in VIDEOS:
        out[name] = write_video(os.path.join(root, f"{name}.{ext}"), pan_zoom(source, n), codec, rate)
    return out


def write_bad_videos(root: str, good_mkv: str) -> Dict[str, str]:
    """Broken files with video extensions: not a video, truncated (an mkv cut
    in the middle: it opens, then its stream ends early), audio only, empty."""
    import av

    os.makedirs(root, exist_ok=True)
    out = {}
    path = os.path.join(root, "not_a_video.mp4")
    with open(path, "w") as f:
        f.write("this is a text file, not a video\n" * 20)
    out["not_a_video"] = path
    path = os.path.join(root, "truncated.mkv")
    data = open(good_mkv, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    out["truncated"] = path
    path = os.path.join(root, "audio_only.mkv")
    with av.open(path, "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = (np.sin(np.arange(8000) / 5.0) * 3000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out["audio_only"] = path
    path = os.path.join(root, "empty.mp4")
    open(path, "wb").close()
    out["empty"] = path
    return out


def decode_with_pyav(path: str) -> List[np.ndarray]:
    """Every frame of ``path``, decoded by PyAV directly (the reference)."""
    import av

    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
