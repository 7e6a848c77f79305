"""Preprocessing for torch image models: decode, resize, normalize, collate.

These pieces run in DataLoader workers, so every one of them is picklable
(module-level classes holding plain data):

- :class:`ImageFileLoader` decodes a file (JPEGs with torchvision's libjpeg
  decoder straight to a tensor, optionally at reduced scale with PIL's
  ``draft``; anything else with PIL) and hands the pixels to
- :class:`ImageTransform`, which resizes a uint8 tensor, scales it to
  ``[0, 1]`` and normalizes it into an :class:`ImageInput` that remembers the
  original image size;
- :class:`ImageCollate` copies same-size inputs into one :class:`ImageBatch`
  tensor in the layout the model wants, allocated in shared memory when it
  runs in a DataLoader worker (so handing it to the main process copies
  nothing); ragged inputs stay a list.

Pixels are laid out height, width, channel from the decoder to the batch
(a ``(3, H, W)`` tensor with channels-last strides): that is the layout of
torchvision's fast uint8 resize and of a channels_last model's input, so no
step transposes them.

Example::

    transform = ImageTransform(min_dim=224, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    loader = ImageFileLoader(transform, fast_decode=True)
    batch = ImageCollate()([loader(path) for path in paths])
    batch.tensors.shape        # (N, 3, H, W) when the images share a size
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .errors import ModelError
from .image_io import decode_rgb, open_image, to_rgb, upright
from .media import exif_orientation_of

__all__ = [
    "Size",
    "Normalize",
    "ImageInput",
    "ImageBatch",
    "ImageTransform",
    "ImageFileLoader",
    "ImageCollate",
]

#: ``(width, height)`` in pixels
Size = Tuple[int, int]


class Normalize:
    """uint8 pixels -> float: scale to ``[0, 1]``, then ``(x - mean) / std``
    per channel. Picklable.

    The same operations, in the same order, as
    ``torchvision.transforms.v2.functional.normalize(x.float() / 255, mean, std)``,
    so the result is bitwise the same; it runs on the tensor's device and
    keeps its memory layout. A CPU batch is converted one image at a time
    (each stays in cache across the three passes).

    Args:
        mean, std: per-channel values (None: only scale to ``[0, 1]``).
    """

    def __init__(self, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None):
        if (mean is None) != (std is None):
            raise ValueError("Normalize takes both mean and std, or neither")
        if std is not None and not all(float(v) != 0.0 for v in std):
            raise ValueError(f"std must not contain zeros, got {list(std)}")
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]

    def __call__(self, pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``uint8 [3, H, W]`` or ``[N, 3, H, W]`` -> ``dtype`` (computed in float32, then cast)."""
        out = torch.empty_like(pixels, dtype=torch.float32)  # keeps channels_last
        if pixels.dim() == 4 and pixels.device.type == "cpu":
            for p, o in zip(pixels, out):
                self._into(p, o)
        elif pixels.dim() == 4:  # one launch per op on an accelerator
            self._into(pixels, out, channel_dim=1)
        else:
            self._into(pixels, out)
        return out if dtype == torch.float32 else out.to(dtype)

    def _into(self, pixels: torch.Tensor, out: torch.Tensor, channel_dim: int = 0) -> None:
        torch.div(pixels, 255.0, out=out)
        if self.mean is None:
            return
        hwc = channel_dim == 0 and pixels.dim() == 3 and out.permute(1, 2, 0).is_contiguous()
        if hwc and not out.is_contiguous():
            # channels-last (H, W, 3) memory: per-channel constants broadcast
            # over a (3,) innermost dim vectorize badly (4x slower), so treat
            # each row as W*3 values against a repeated (m0, m1, m2, m0, ...) row
            c, h, w = out.shape
            out = out.permute(1, 2, 0).view(h, w * c)
            mean, std = self._rows(w, out.device)
        else:
            shape = [1] * out.dim()
            shape[channel_dim] = -1
            mean = torch.as_tensor(self.mean, dtype=torch.float32, device=out.device).view(shape)
            std = torch.as_tensor(self.std, dtype=torch.float32, device=out.device).view(shape)
        out.sub_(mean).div_(std)

    def _rows(self, width: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        cache = self.__dict__.setdefault("_row_cache", {})
        key = (width, str(device))
        if key not in cache:
            cache.clear()  # one image width at a time in practice
            cache[key] = (
                torch.tensor(self.mean, dtype=torch.float32, device=device).repeat(width),
                torch.tensor(self.std, dtype=torch.float32, device=device).repeat(width),
            )
        return cache[key]

    def __getstate__(self) -> Dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Normalize) and (self.mean, self.std) == (other.mean, other.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


@dataclasses.dataclass
class ImageInput:
    """One preprocessed image.

    Attributes:
        tensor: ``FloatTensor[3, H, W]``, resized and normalized; or, when
            ``normalize`` is set, the resized ``uint8`` pixels still to be
            normalized (its strides may be channels-last;
            :class:`ImageCollate` sets the batch layout).
        image_size: the original ``(width, height)``, before any resize.
        normalize: set when ``tensor`` holds uint8 pixels: the model applies
            it on its device. The engine's loaders do this: a uint8 batch is
            4x smaller to hand from a worker to the main process and to
            copy to a GPU.
    """

    tensor: torch.Tensor
    image_size: Size
    normalize: Optional[Normalize] = None

    @property
    def input_size(self) -> Size:
        return (int(self.tensor.shape[-1]), int(self.tensor.shape[-2]))

    def normalized(self) -> torch.Tensor:
        """The float model input (``tensor`` itself unless normalization was deferred)."""
        return self.tensor if self.normalize is None else self.normalize(self.tensor)


@dataclasses.dataclass
class ImageBatch:
    """A collated batch: what ``predict_all`` takes with ``preprocess`` off.

    Attributes:
        tensors: ``FloatTensor[N, 3, H, W]`` when the inputs share a size, else
            a list of ``N`` ``FloatTensor[3, H_i, W_i]``; ``uint8`` pixels
            when ``normalize`` is set.
        image_sizes: the original ``(width, height)`` of each image.
        normalize: set when ``tensors`` hold uint8 pixels (see :class:`ImageInput`).
    """

    tensors: Union[torch.Tensor, List[torch.Tensor]]
    image_sizes: List[Size]
    normalize: Optional[Normalize] = None

    def __len__(self) -> int:
        return len(self.image_sizes)

    def pin_memory(self) -> "ImageBatch":  # used by DataLoader(pin_memory=True)
        if isinstance(self.tensors, torch.Tensor):
            return ImageBatch(self.tensors.pin_memory(), self.image_sizes, self.normalize)
        return ImageBatch([t.pin_memory() for t in self.tensors], self.image_sizes, self.normalize)


#: the ways :class:`ImageTransform` resizes
PREPROCESSING = ("tensor", "pil")


class ImageTransform:
    """uint8 RGB image -> :class:`ImageInput`: resize, scale to ``[0, 1]``, normalize.

    With ``preprocessing="tensor"`` (the default) the resize runs on the
    uint8 tensor (torchvision's antialiased bilinear kernel, faster than PIL
    and than resizing floats), then converts to float. With
    ``preprocessing="pil"`` it reproduces the PIL pipeline of FiftyOne's
    ``TorchImageModel`` and of plain torchvision scripts
    (``ToPILImage``, ``MinResize`` / ``MaxResize`` or ``Resize`` with PIL's
    bilinear filter, ``ToTensor``, ``Normalize``): the same sizes, rounded as
    FiftyOne rounds them, and the same pixels, so probabilities match those
    tools' to float precision. Images that need no resize are identical
    either way. Picklable. Accepts uint8 ``(H, W, 3)`` arrays (the fast
    path), other arrays (grayscale, RGBA, 16-bit: converted) and PIL images
    of any mode.

    Args:
        image_size: exact output ``(width, height)``.
        min_dim: upscale so that the smaller side is at least this.
        max_dim: downscale so that the larger side is at most this.
        mean, std: per-channel normalization.
        preprocessing: ``"tensor"`` or ``"pil"``.
    """

    def __init__(
        self,
        image_size: Optional[Size] = None,
        min_dim: Optional[int] = None,
        max_dim: Optional[int] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        preprocessing: str = "tensor",
    ):
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")
        self.image_size = image_size
        self.min_dim = min_dim
        self.max_dim = max_dim
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]
        self.normalize = Normalize(self.mean, self.std)
        self.preprocessing = preprocessing

    def target_size(self, width: int, height: int) -> Size:
        """The ``(width, height)`` an image of this size is resized to.

        Sizes follow torchvision's ``Resize(int)``: the constrained side gets
        the exact value, the other is scaled and truncated. With
        ``preprocessing="pil"`` they follow FiftyOne's ``MinResize`` /
        ``MaxResize``: both sides scaled by the same factor and rounded.
        """
        if self.image_size is not None:
            return self.image_size
        if self.preprocessing == "pil":
            return _fiftyone_size(width, height, self.min_dim, self.max_dim)
        w, h = width, height
        if self.min_dim and min(w, h) < self.min_dim:
            w, h = _scale_side(w, h, self.min_dim, short=True)
        if self.max_dim and max(w, h) > self.max_dim:
            w, h = _scale_side(w, h, self.max_dim, short=False)
        return (w, h)

    def __call__(self, image: Any) -> ImageInput:
        array = _to_rgb_array(image)
        return self.apply(array, (array.shape[1], array.shape[0]))

    def apply(self, array: np.ndarray, image_size: Size, defer_normalize: bool = False) -> ImageInput:
        """Transforms a uint8 ``(H, W, 3)`` array whose original size was ``image_size``
        (differs from the array's when the JPEG was decoded at reduced scale)."""
        if not array.flags.writeable:  # np.asarray(PIL image) is read-only
            array = array.copy()
        pixels = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)  # uint8 CHW view of HWC
        return self.apply_tensor(pixels, image_size, defer_normalize)

    def apply_tensor(self, pixels: torch.Tensor, image_size: Size, defer_normalize: bool = False) -> ImageInput:
        """Transforms a uint8 ``(3, H, W)`` tensor (any strides; channels-last
        strides, as decoders produce, are the fast case). With
        ``defer_normalize`` the result holds the resized uint8 pixels and
        this transform's :class:`Normalize` (see :class:`ImageInput`)."""
        import torchvision.transforms.v2.functional as TF

        w, h = self.target_size(*image_size)
        if (pixels.shape[2], pixels.shape[1]) != (w, h):
            if self.preprocessing == "pil":
                pixels = _pil_resize(pixels, (w, h))
            else:
                pixels = TF.resize(pixels, [h, w], antialias=True)
        size = (int(image_size[0]), int(image_size[1]))
        if defer_normalize:
            return ImageInput(pixels, size, self.normalize)
        return ImageInput(self.normalize(pixels), size)

    def __repr__(self) -> str:
        return (
            f"ImageTransform(image_size={self.image_size}, min_dim={self.min_dim}, max_dim={self.max_dim}, "
            f"mean={self.mean}, std={self.std}, preprocessing={self.preprocessing!r})"
        )


def _fiftyone_size(width: int, height: int, min_dim: Optional[int], max_dim: Optional[int]) -> Size:
    """FiftyOne's ``MinResize(min_dim)`` then ``MaxResize(max_dim)``: a side
    below the minimum (or above the maximum) scales both by one factor, rounded."""
    w, h = width, height
    if min_dim and (h < min_dim or w < min_dim):
        alpha = max(min_dim / h, min_dim / w)
        w, h = int(round(alpha * w)), int(round(alpha * h))
    if max_dim and (h > max_dim or w > max_dim):
        alpha = min(max_dim / h, max_dim / w)
        w, h = int(round(alpha * w)), int(round(alpha * h))
    return (max(w, 1), max(h, 1))


def _pil_resize(pixels: torch.Tensor, size: Size) -> torch.Tensor:
    """uint8 ``(3, H, W)`` -> uint8 ``(3, h, w)`` (channels-last strides)
    resized by PIL's bilinear filter, as ``torchvision.transforms.Resize``
    does on a PIL image."""
    array = np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())
    resized = np.asarray(Image.fromarray(array).resize(size, Image.Resampling.BILINEAR))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1)


def _scale_side(w: int, h: int, target: int, short: bool) -> Size:
    if (w <= h) == short:  # width is the side to set
        return target, max(int(target * h / w), 1)
    return max(int(target * w / h), 1), target


def _to_rgb_array(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb(image))
    if isinstance(image, torch.Tensor):  # (3, H, W) uint8, as torchvision.io decodes
        if image.dtype == torch.uint8 and image.dim() == 3 and image.shape[0] == 3:
            return image.permute(1, 2, 0).numpy()
        raise ModelError(f"Expected a uint8 (3, H, W) image tensor, got {image.dtype} {tuple(image.shape)}")
    array = np.asarray(image)
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        return array
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ModelError(f"Expected an (H, W, 3) RGB image array, got shape {array.shape}")
    if array.dtype == np.uint16:
        if array.ndim == 2:  # 16-bit grayscale: let to_rgb scale it
            return np.asarray(to_rgb(Image.fromarray(array)))
        array = np.round(array / 257.0).astype(np.uint8)  # 65535 -> 255
    if array.dtype != np.uint8:
        raise ModelError(f"Expected a uint8 or uint16 image array, got {array.dtype}")
    return np.asarray(to_rgb(Image.fromarray(array)))  # grayscale, RGBA


class ImageFileLoader:
    """filepath -> :class:`ImageInput`, for DataLoader workers. Picklable.

    Baseline and progressive JPEGs in RGB or grayscale are decoded by
    torchvision's :func:`~torchvision.io.decode_jpeg` into a uint8 tensor
    (about 30% cheaper than PIL plus a numpy round trip; both use libjpeg
    with the same settings, and ``tests/test_torch_image.py`` checks that
    their pixels are identical). Other files, CMYK JPEGs and anything the
    torchvision decoder rejects go through PIL, and any mode is converted to
    RGB (see :func:`modelzoo.image_io.to_rgb`), so errors read the same
    either way. With ``fast_decode``, a JPEG whose target size is at least 2x
    smaller on both sides is decoded at reduced scale by libjpeg (PIL
    ``draft``); the output tensor has the same size either way. Raises
    ``OSError`` naming the file when it cannot be read.

    Args:
        transform: what turns the decoded pixels into model input.
        fast_decode: decode large JPEGs at reduced scale (changes pixels slightly).
        jpeg_decoder: ``"torchvision"`` (default) or ``"pil"``.
        defer_normalize: return the resized uint8 pixels and leave the
            normalization to the model (see :class:`ImageInput`).
        exif_orientation: decode images upright (their EXIF orientation
            applied; sizes are the upright ones); False keeps the stored
            pixel order. Costs nothing for files without EXIF orientation.
    """

    def __init__(
        self,
        transform: ImageTransform,
        fast_decode: bool = False,
        jpeg_decoder: str = "torchvision",
        defer_normalize: bool = False,
        exif_orientation: bool = True,
    ):
        if jpeg_decoder not in ("torchvision", "pil"):
            raise ValueError(f"jpeg_decoder must be 'torchvision' or 'pil', got {jpeg_decoder!r}")
        self.transform = transform
        self.fast_decode = fast_decode
        self.jpeg_decoder = jpeg_decoder
        self.defer_normalize = defer_normalize
        self.exif_orientation = exif_orientation

    def __call__(self, path: str) -> ImageInput:
        with open_image(path) as img:  # the header only: format, mode, size
            orientation = exif_orientation_of(img) if getattr(self, "exif_orientation", True) else 1
            size = img.size if orientation < 5 else img.size[::-1]  # 5-8: the upright image is transposed
            if img.format == "JPEG":
                tw, th = self.transform.target_size(*size)
                if self.fast_decode and 2 * tw <= size[0] and 2 * th <= size[1]:
                    img.draft("RGB", (th, tw) if orientation >= 5 else (tw, th))
                elif self.jpeg_decoder == "torchvision" and img.mode in ("RGB", "L") and orientation == 1:
                    # (a turned JPEG goes through PIL, whose transpose is 4x cheaper than the op's
                    # EXIF rotation or a torch flip of the transposed tensor)
                    pixels = _decode_jpeg(path)
                    if pixels is not None and (pixels.shape[2], pixels.shape[1]) == size:
                        return self.transform.apply_tensor(pixels, size, self.defer_normalize)
            array = np.asarray(upright(decode_rgb(img, path), orientation))
        return self.transform.apply(array, size, self.defer_normalize)

    def load_array(self, image: np.ndarray) -> ImageInput:
        """An already decoded uint8 ``(H, W, 3)`` array (a video frame) -> :class:`ImageInput`."""
        return self.transform.apply(image, (image.shape[1], image.shape[0]), self.defer_normalize)


def _decode_jpeg(path: str) -> Optional[torch.Tensor]:
    """uint8 ``(3, H, W)`` RGB (channels-last strides) from torchvision's
    libjpeg decoder, or None when it cannot (PIL then decodes the file and
    reports what is wrong with it)."""
    decode = _jpeg_decoder()
    if decode is None:
        return None
    try:
        with open(path, "rb") as f:
            data = bytearray(f.read())
        return decode(torch.frombuffer(data, dtype=torch.uint8))
    except Exception:
        return None


_JPEG_DECODER: Any = None


def _jpeg_decoder() -> Any:
    """torchvision's libjpeg decoding op (RGB output), or None without it.

    The op is called directly: its Python wrapper warns on every call that
    torchvision's image I/O is deprecated in favour of TorchCodec. When it
    is gone, PIL decodes everything (same pixels, ~30% slower)."""
    global _JPEG_DECODER
    if _JPEG_DECODER is None:
        _JPEG_DECODER = False
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                from torchvision.io.image import ImageReadMode  # loads the image ops

            op = torch.ops.image.decode_jpeg
            rgb = ImageReadMode.RGB.value
            _JPEG_DECODER = lambda data: op(data, rgb, False)  # noqa: E731 (no EXIF rotation, as PIL)
        except Exception:
            pass
    return _JPEG_DECODER or None


class ImageCollate:
    """Collates :class:`ImageInput` items into an :class:`ImageBatch`. Picklable.

    Same-size tensors are copied into one NCHW tensor, laid out channels-last
    with ``channels_last`` (the layout an optimized model wants, made here in
    the DataLoader worker rather than in the main process) and contiguous
    otherwise. In a worker the batch is allocated in shared memory, as
    torch's default collate does, so sending it to the main process copies
    nothing. Otherwise (or with ``stack=False``) the tensors stay a list.
    Items whose normalization was deferred stay uint8 (the batch carries
    their :class:`Normalize`) unless they are mixed with normalized ones.
    """

    def __init__(self, stack: bool = True, channels_last: bool = False):
        self.stack = stack
        self.channels_last = channels_last

    def __call__(self, items: Sequence[ImageInput]) -> ImageBatch:
        sizes = [item.image_size for item in items]
        normalize = items[0].normalize if items else None
        if normalize is not None and all(item.normalize == normalize for item in items):
            tensors = [item.tensor for item in items]
        else:
            normalize = None
            tensors = [item.normalized() for item in items]
        if self.stack and tensors and all(t.shape == tensors[0].shape for t in tensors):
            shape = (len(tensors),) + tuple(tensors[0].shape)
            batch = _empty_batch(shape, tensors[0].dtype, self.channels_last)
            for out, t in zip(batch, tensors):
                out.copy_(t)
            return ImageBatch(batch, sizes, normalize)
        if not self.channels_last:
            tensors = [t.contiguous() for t in tensors]
        return ImageBatch(tensors, sizes, normalize)


def _empty_batch(shape: Tuple[int, ...], dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """An uninitialized NCHW tensor (channels-last strides on request), in
    shared memory when called in a DataLoader worker."""
    n, c, h, w = shape
    strides = (c * h * w, 1, w * c, c) if channels_last else (c * h * w, h * w, w, 1)
    from torch.utils.data import get_worker_info

    if get_worker_info() is None:
        return torch.empty_strided(shape, strides, dtype=dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape, strides)
