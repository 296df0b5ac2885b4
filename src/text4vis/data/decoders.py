"""Frame readers behind one small interface: ``reader.num_frames`` and ``reader.frames(indices)``.

``frames(indices)`` returns uint8 [T, H, W, 3] (RGB) where row t is the ``indices[t]``-th frame of
the video in presentation order (indices may repeat and need not be sorted). Every failure raises
:class:`VideoDecodeError` naming the file and the reason.

Readers, chosen by name (:func:`open_video`):

- ``pyav`` (default): builds a presentation-time index of the stream by demuxing packets (no
  decoding), so frame counts are exact even when the container's ``frames`` field is 0 or wrong,
  and frame k maps to the k-th smallest timestamp, which stays right with B-frames and variable
  frame rate. Reading seeks to the keyframe before the first needed frame and decodes forward
  only as far as the last needed one, seeking again when the next needed frame lies beyond a
  later keyframe.
- ``frames``: a folder of JPEG files named by ``frame_template`` (``img_{:05d}.jpg``) numbered
  from ``start_index``; each distinct frame decoded by simplejpeg (libjpeg-turbo) straight into
  its row of the clip, or else (PNG, CMYK, damaged files) by torchvision's batched
  ``decode_jpeg`` or PIL, which name what is wrong.
- ``image``: a single image file (suffix in :data:`IMAGE_SUFFIXES`, any case) read as a video of
  one frame, for image recognition with T = 1; samplers ask for frame 0 (T times when T > 1).
- ``torchcodec`` / ``decord``: used when installed (imported on first use).
"""

from __future__ import annotations

import bisect
import contextlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from text4vis.errors import ConfigError, VideoDecodeError

__all__ = [
    "DECODERS",
    "IMAGE_SUFFIXES",
    "FrameFolderReader",
    "ImageReader",
    "PyAVReader",
    "VideoDecodeError",
    "VideoReader",
    "open_video",
]

logger = logging.getLogger("text4vis.data.decoders")

DECODERS = ("pyav", "torchcodec", "decord")

# File suffixes (compared in lower case) that open_video reads as one-frame images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class VideoReader(Protocol):
    """What every reader offers."""

    path: str
    num_frames: int

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [T, H, W, 3] RGB frames at ``indices`` (presentation order, 0-based)."""
        ...


def _check_indices(path: str, indices: Sequence[int], num_frames: int) -> np.ndarray:
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{path}: no frame indices requested")
    if array.min() < 0 or array.max() >= num_frames:
        raise VideoDecodeError(
            path,
            f"frame index out of range: asked for {int(array.min())}..{int(array.max())}, "
            f"the video has {num_frames} frames",
        )
    return array


def _existing_file(path: str | Path, kind: str = "video") -> str:
    """``path`` as a string, checked to name a file (the first check of every file reader).

    Raises:
        VideoDecodeError: there is no such file.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "no such file", kind=kind)
    return path


# ----------------------------------------------------------------------------------------------
# PyAV
# ----------------------------------------------------------------------------------------------


_reformatters = threading.local()


def _to_rgb(frame: Any) -> np.ndarray:
    """uint8 [H, W, 3] RGB of a decoded frame through one swscale context per thread.

    ``frame.to_ndarray(format="rgb24")`` builds a new conversion context for every frame; a
    reused :class:`av.video.reformatter.VideoReformatter` keeps it while the size and pixel
    format stay the same, with the same bytes (tested): 0.19 instead of 0.42 ms per 428x320
    frame here, about 2 ms of an 8-frame clip. ``threads=1``: swscale's default (0, automatic)
    starts a thread pool per context, which costs CPU on busy workers, and a context inherited
    by a forked DataLoader worker would wait forever for threads that do not exist there (seen:
    the first worker after a decode in the main process hung).
    """
    reformatter = getattr(_reformatters, "value", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter  # PyAV on use, as in PyAVReader

        reformatter = _reformatters.value = VideoReformatter()
    return reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()


def upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """The picture as it is meant to be shown: ``rgb`` (uint8 [H, W, 3]) turned ``rotation``
    degrees counter-clockwise (the display matrix's angle, as PyAV's ``VideoFrame.rotation`` and
    FFmpeg's ``-display_rotation`` give it), to the nearest quarter turn."""
    quarter_turns = int(round(float(rotation) / 90.0)) % 4
    if quarter_turns == 0:
        return rgb
    # np.rot90 turns counter-clockwise for positive k: the first column becomes the last row.
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))


class PyAVReader:
    """Frames of a video file through PyAV, by presentation order.

    Args:
        path: the video file.
        threads: decoder threads (0 = FFmpeg's choice).
        thread_type: FFmpeg threading: "AUTO" (frame + slice), "SLICE", "FRAME" or "NONE".
    """

    def __init__(self, path: str | Path, *, threads: int = 0, thread_type: str = "AUTO") -> None:
        import av  # PyAV on use: importing text4vis.data loads no decoder

        self.path = _existing_file(path)
        if os.path.getsize(self.path) == 0:
            raise VideoDecodeError(self.path, "the file is empty (0 bytes)")
        try:
            container = av.open(self.path, mode="r")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoDecodeError(self.path, f"not a readable video container ({exc})") from None
        try:
            if not container.streams.video:
                raise VideoDecodeError(self.path, "the file has no video stream")
            stream = container.streams.video[0]
            self._pts, self._keyframes = self._index(container, stream)
            if not self._pts:
                raise VideoDecodeError(self.path, "the video stream has no frames")
        except VideoDecodeError:
            container.close()
            raise
        except (av.FFmpegError, OSError) as exc:
            container.close()
            raise VideoDecodeError(self.path, f"demuxing failed ({exc})") from None
        stream.thread_type = thread_type
        if threads:
            stream.thread_count = threads
        # The container stays open for frames(): opening a file costs about as much as decoding
        # a few frames. close() (or the garbage collector) releases it.
        self._container: Any = container
        self._stream = stream
        self.num_frames = len(self._pts)
        self._position = {p: k for k, p in enumerate(self._pts)}

    def close(self) -> None:
        """Release the file."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> PyAVReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown av may be gone
            self.close()

    def _index(self, container: Any, stream: Any) -> tuple[list[int], list[int]]:
        """Sorted presentation timestamps of all frames and those of keyframes (demux only)."""
        pts: list[int] = []
        keys: list[int] = []
        # closed, not left to the garbage collector: PyAV frees the current packet on close
        with contextlib.closing(container.demux(stream)) as packets:
            for packet in packets:
                if packet.size == 0:  # the flush packet at the end of the stream
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    raise VideoDecodeError(
                        self.path,
                        "packets carry no timestamps, so frames cannot be located by time; "
                        "remux the file (ffmpeg -i IN -c copy OUT.mp4) or extract frames",
                    )
                pts.append(int(stamp))
                if packet.is_keyframe:
                    keys.append(int(stamp))
        pts.sort()
        keys.sort()
        if len(set(pts)) != len(pts):
            raise VideoDecodeError(self.path, "several frames share one timestamp")
        return pts, keys

    def _keyframe_before(self, stamp: int) -> int | None:
        i = bisect.bisect_right(self._keyframes, stamp) - 1
        return self._keyframes[i] if i >= 0 else None

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [T, H, W, 3] RGB frames at ``indices`` (presentation order)."""
        import av  # PyAV on use: importing text4vis.data loads no decoder

        array = _check_indices(self.path, indices, self.num_frames)
        if self._container is None:
            raise VideoDecodeError(self.path, "the reader was closed")
        wanted = sorted(set(array.tolist()))
        got: dict[int, np.ndarray] = {}
        try:
            self._decode_into(self._container, self._stream, wanted, got)
        except VideoDecodeError:
            raise
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoDecodeError(self.path, f"decoding failed ({exc})") from None
        missing = [k for k in wanted if k not in got]
        if missing:
            raise VideoDecodeError(
                self.path, f"frames {missing[:8]} could not be decoded (damaged or truncated file)"
            )
        return np.stack([got[k] for k in array.tolist()])

    def _decode_into(
        self, container: Any, stream: Any, wanted: list[int], got: dict[int, np.ndarray]
    ) -> None:
        pending = list(wanted)  # sorted frame positions still to decode
        while pending:
            first = pending[0]
            target = self._pts[first]
            container.seek(target, stream=stream, backward=True, any_frame=False)
            progressed = self._decode_run(container, stream, pending, got)
            if not progressed:
                # The seek landed after the frame we need (an imprecise index): decode from the
                # start of the stream instead, once.
                container.seek(self._pts[0], stream=stream, backward=True, any_frame=False)
                if not self._decode_run(container, stream, pending, got):
                    return  # the caller reports the missing frames
            pending = [k for k in pending if k not in got]

    @staticmethod
    def _decode_needed(container: Any, stream: Any, wanted_pts: set[int]) -> Any:
        """Decoded frames from the current position, without the non-reference frames (most
        B-frames) that are not wanted: no other frame depends on them, so FFmpeg can drop their
        packets undecoded (``skip_frame``), and every frame that is decoded is bit-identical."""
        codec = stream.codec_context
        # Closed explicitly: PyAV frees a demux generator's read packet only when it is closed
        # or finished, not when a generator left half-way is collected (measured: about 150
        # bytes of native memory per unfinished run on small clips; a server decoding a clip per
        # request grew without end). benchmarks/README.md, the soak.
        with contextlib.closing(container.demux(stream)) as packets:
            for packet in packets:
                wanted = packet.size == 0 or packet.pts is None or int(packet.pts) in wanted_pts
                codec.skip_frame = "DEFAULT" if wanted else "NONREF"
                yield from codec.decode(packet)

    def _decode_run(
        self, container: Any, stream: Any, pending: list[int], got: dict[int, np.ndarray]
    ) -> bool:
        """Decode forward from the current position; stop past the last needed frame, or when the
        next needed frame lies beyond a later keyframe (a new seek is cheaper). Returns whether
        the first pending frame was decoded."""
        first = pending[0]
        need = set(pending)
        last = pending[-1]
        frames = self._decode_needed(container, stream, {self._pts[k] for k in pending})
        with contextlib.closing(frames):  # the run stops early: close the demuxer (see above)
            for frame in frames:
                if frame.pts is None:
                    continue
                position = self._position.get(int(frame.pts))
                if position is None:
                    continue
                if position > first and first not in got:
                    return False  # overshot: the seek landed after the first needed frame
                if position in need and position not in got:
                    got[position] = upright(_to_rgb(frame), frame.rotation)
                    remaining = [k for k in pending if k not in got]
                    if not remaining:
                        return True
                    next_key = self._keyframe_before(self._pts[remaining[0]])
                    if next_key is not None and next_key > int(frame.pts):
                        return True  # seek again to the keyframe before the next needed frame
                if position >= last:
                    break
        return first in got


# ----------------------------------------------------------------------------------------------
# Frame folders
# ----------------------------------------------------------------------------------------------


class FrameFolderReader:
    """Frames stored as JPEG files in a folder.

    Args:
        path: the folder.
        num_frames: frames in the folder (from the list file); counted from the files when None.
        frame_template: file name of frame k, formatted with ``start_index + k``.
        start_index: number of the first frame's file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_frames: int | None = None,
        frame_template: str = "img_{:05d}.jpg",
        start_index: int = 1,
    ) -> None:
        self.path = str(path)
        self.frame_template = frame_template
        self.start_index = start_index
        if not os.path.isdir(self.path):
            raise VideoDecodeError(self.path, "no such frame folder")
        if num_frames is None:
            num_frames = self._count()
        if num_frames < 1:
            raise VideoDecodeError(
                self.path, f"no frames named like {frame_template.format(start_index)}"
            )
        self.num_frames = int(num_frames)

    def _count(self) -> int:
        names = set(os.listdir(self.path))
        count = 0
        while self.frame_template.format(self.start_index + count) in names:
            count += 1
        # Frames after a gap: the folder is damaged; reading only those before it would pass a
        # shortened video off as the whole one.
        after = [
            k
            for k in range(count + 1, count + 1 + len(names))
            if self.frame_template.format(self.start_index + k) in names
        ]
        if after:
            missing = self.frame_template.format(self.start_index + count)
            last = self.frame_template.format(self.start_index + after[-1])
            raise VideoDecodeError(
                self.path, f"frame file {missing} is missing (the folder has frames up to {last})"
            )
        return count

    def frame_path(self, index: int) -> str:
        """File of frame ``index`` (0-based)."""
        return os.path.join(self.path, self.frame_template.format(self.start_index + index))

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [T, H, W, 3] RGB frames at ``indices``; each distinct file is decoded once."""
        array = _check_indices(self.path, indices, self.num_frames)
        unique = sorted(set(array.tolist()))
        data = []
        for k in unique:
            file = self.frame_path(k)
            try:
                with open(file, "rb") as handle:
                    raw = handle.read()
            except OSError as exc:
                raise VideoDecodeError(
                    self.path, f"frame file {file} is missing or unreadable ({exc.strerror})"
                ) from None
            if not raw:
                raise VideoDecodeError(self.path, f"frame file {file} is empty")
            data.append(raw)
        position = {k: i for i, k in enumerate(unique)}
        order = [position[k] for k in array.tolist()]  # row t of the clip is data[order[t]]
        clip = _decode_jpegs_into_clip(data, order)
        if clip is not None:
            return clip
        try:
            images = _decode_images(data)  # list of [H, W, 3] uint8
        except (RuntimeError, OSError, ValueError) as exc:
            raise VideoDecodeError(
                self.path, f"a frame is not a valid JPEG/PNG image ({exc})"
            ) from None
        shapes = {img.shape for img in images}
        if len(shapes) != 1:
            raise VideoDecodeError(self.path, f"frames have different sizes {sorted(shapes)}")
        # One copy from the decoder's buffers into the clip, repeated frames included.
        clip = np.empty((array.size, *images[0].shape), dtype=np.uint8)  # [T,H,W,3]
        for t, i in enumerate(order):
            clip[t] = images[i]
        return clip


# ----------------------------------------------------------------------------------------------
# Single images
# ----------------------------------------------------------------------------------------------


def is_image_path(path: str | Path) -> bool:
    """Whether ``path`` names an image file by its suffix (see :data:`IMAGE_SUFFIXES`)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class ImageReader:
    """One image file as a video of one frame (image recognition, T = 1).

    ``frames(indices)`` accepts only index 0, repeated as often as asked (a sampler for T > 1
    frames repeats the only frame), and decodes the file once per call: JPEG through
    torchvision's libjpeg-turbo decoder, other formats (and JPEG-named files of another format)
    through PIL.

    Args:
        path: the image file.
    """

    num_frames = 1

    def __init__(self, path: str | Path) -> None:
        self.path = _existing_file(path, kind="image")

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [T, H, W, 3] RGB: the image, once per index (every index must be 0)."""
        array = np.asarray(indices, dtype=np.int64).reshape(-1)
        if array.size == 0:
            raise ValueError(f"{self.path}: no frame indices requested")
        if np.any(array != 0):
            bad = int(array[array != 0][0])
            raise VideoDecodeError(
                self.path,
                f"frame index {bad} out of range: an image has one frame (index 0)",
                kind="image",
            )
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise VideoDecodeError(
                self.path, f"unreadable ({exc.strerror})", kind="image"
            ) from None
        if not raw:
            raise VideoDecodeError(self.path, "the file is empty (0 bytes)", kind="image")
        clip = _decode_jpegs_into_clip([raw], [0] * array.size)  # None: not a plain JPEG
        if clip is not None:
            return clip
        try:
            image = _decode_images([raw])[0]  # [H, W, 3]
        except Exception as exc:  # libjpeg and PIL raise RuntimeError, OSError, SyntaxError...
            raise VideoDecodeError(
                self.path,
                f"not a decodable {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} image "
                f"({type(exc).__name__}: {exc})",
                kind="image",
            ) from None
        clip = np.empty((array.size, *image.shape), dtype=np.uint8)  # [T, H, W, 3]
        clip[:] = image  # one contiguous copy, repeated for T > 1
        return clip


def _simplejpeg() -> Any:
    """The ``simplejpeg`` module, or None when it is not installed."""
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a dependency; kept optional for odd platforms
        return None
    return simplejpeg


def _decode_jpegs_into_clip(data: list[bytes], order: list[int]) -> np.ndarray | None:
    """Decode JPEG frames into the rows of a clip: uint8 [len(order), H, W, 3], row t from
    ``data[order[t]]``.

    simplejpeg's bundled libjpeg-turbo (the same library as torchvision's and PIL's decoders,
    default settings: the same pixels, checked by the tests) decodes each distinct frame into
    its row of the clip, so no per-frame buffer is copied afterwards. Measured on 2 cores (8
    frames of 428x320, q90): 0.64 ms per frame against 0.70 for torchvision's ``decode_jpeg``,
    plus the 0.3-0.4 ms per clip of the copy it saves.

    Returns None when the fast path does not apply (simplejpeg missing, a PNG, frames of
    different sizes, a JPEG libjpeg cannot turn into RGB such as CMYK, a damaged file): the
    general path then decodes the frames and names what is wrong.
    """
    simplejpeg = _simplejpeg()
    if simplejpeg is None or not all(raw[:2] == b"\xff\xd8" for raw in data):
        return None
    try:
        headers = {tuple(simplejpeg.decode_jpeg_header(raw)[:3]) for raw in data}
        # YCbCr and grayscale only: asked for RGB, libjpeg also "decodes" a CMYK or YCCK file,
        # to other pixels than torchvision's and PIL's conversion (seen with a CMYK file).
        if len(headers) != 1 or next(iter(headers))[2] not in ("YCbCr", "Gray"):
            return None
        ((height, width, _),) = headers
        clip = np.empty((len(order), height, width, 3), dtype=np.uint8)
        first_row: dict[int, int] = {}
        for t, i in enumerate(order):
            if i in first_row:  # a repeated frame (short videos): copy the decoded row
                clip[t] = clip[first_row[i]]
                continue
            simplejpeg.decode_jpeg(data[i], colorspace="RGB", buffer=clip[t], strict=True)
            first_row[i] = t
    except ValueError:  # simplejpeg's error for every libjpeg failure, warnings included
        return None
    return clip


def _decode_images(data: list[bytes]) -> list[np.ndarray]:
    """Decode encoded images to RGB uint8 [H, W, 3].

    torchvision's batched ``decode_jpeg`` (libjpeg-turbo) is about 1.7x faster than PIL here; it
    is deprecated since torchvision 0.29 in favour of torchcodec, so its warning is silenced for
    this call and PIL takes over for PNG files or once torchvision drops the function.
    (:func:`_decode_jpegs_into_clip` is tried first for frame folders.)
    """
    try:
        import torch  # on use: this module imports no torch (the CLI's --help imports it)
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:  # pragma: no cover - depends on the torchvision version
        decode_jpeg = None
    if decode_jpeg is not None and all(raw[:2] == b"\xff\xd8" for raw in data):
        tensors = [torch.frombuffer(bytearray(raw), dtype=torch.uint8) for raw in data]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
            images = decode_jpeg(tensors, mode=ImageReadMode.RGB)  # list of [3, H, W]
        return [img.permute(1, 2, 0).numpy() for img in images]  # [3,H,W] -> [H,W,3]

    from PIL import Image  # on use, as torch above

    return [np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")) for raw in data]


# ----------------------------------------------------------------------------------------------
# Optional decoders
# ----------------------------------------------------------------------------------------------


class TorchCodecReader:
    """Frames through torchcodec's ``VideoDecoder`` (exact seeking, presentation order)."""

    def __init__(self, path: str | Path) -> None:
        from torchcodec.decoders import VideoDecoder  # type: ignore[import-not-found]

        self.path = _existing_file(path)
        try:
            self._decoder = VideoDecoder(self.path, dimension_order="NHWC")
            self.num_frames = len(self._decoder)
        except Exception as exc:  # torchcodec raises plain RuntimeError/ValueError
            raise VideoDecodeError(self.path, f"torchcodec cannot open it ({exc})") from None

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        array = _check_indices(self.path, indices, self.num_frames)
        try:
            batch = self._decoder.get_frames_at(indices=array.tolist())
        except Exception as exc:
            raise VideoDecodeError(self.path, f"torchcodec decoding failed ({exc})") from None
        return batch.data.numpy()


class DecordReader:
    """Frames through decord's ``VideoReader``."""

    def __init__(self, path: str | Path) -> None:
        import decord  # type: ignore[import-not-found]

        self.path = _existing_file(path)
        try:
            self._reader = decord.VideoReader(self.path, num_threads=1)
            self.num_frames = len(self._reader)
        except Exception as exc:  # decord raises DECORDError (a RuntimeError)
            raise VideoDecodeError(self.path, f"decord cannot open it ({exc})") from None

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        array = _check_indices(self.path, indices, self.num_frames)
        try:
            return self._reader.get_batch(array.tolist()).asnumpy()
        except Exception as exc:
            raise VideoDecodeError(self.path, f"decord decoding failed ({exc})") from None


def open_video(
    path: str | Path,
    decoder: str = "pyav",
    frame_template: str = "img_{:05d}.jpg",
    start_index: int = 1,
    *,
    num_frames: int | None = None,
    threads: int = 0,
) -> VideoReader:
    """Open a video file, a frame folder or a single image.

    Args:
        path: a video file, a folder of frame images, or an image file (a suffix in
            :data:`IMAGE_SUFFIXES`, any case: read as one frame whatever ``decoder`` says).
        decoder: for video files: ``pyav`` (default), ``torchcodec`` or ``decord``.
        frame_template: frame-folder file names, formatted with the frame number.
        start_index: number of the first frame file in a folder.
        num_frames: frames in a folder when known (saves listing it).
        threads: PyAV decoder threads (0 = FFmpeg's choice with frame and slice threading; 1 is
            cheaper in CPU time when DataLoader workers already occupy the cores).

    Returns:
        A reader with ``.num_frames`` and ``.frames(indices) -> uint8 [T, H, W, 3]``.

    Raises:
        VideoDecodeError: the file or folder cannot be read (the message says why).
        ValueError: an unknown decoder name, or the decoder's package is not installed.
    """
    if os.path.isdir(path):
        return FrameFolderReader(
            path, num_frames=num_frames, frame_template=frame_template, start_index=start_index
        )
    if is_image_path(path):
        return ImageReader(path)
    if decoder == "pyav":
        return PyAVReader(path, threads=threads)
    if decoder not in DECODERS:
        raise ConfigError(f"unknown decoder {decoder!r}; choose one of {list(DECODERS)}")
    try:
        if decoder == "torchcodec":
            return TorchCodecReader(path)
        return DecordReader(path)
    except ImportError:
        raise ConfigError(
            f"decoder {decoder!r} is not installed; pip install 'text4vis[{decoder}]' or use "
            "data.decoder=pyav"
        ) from None
