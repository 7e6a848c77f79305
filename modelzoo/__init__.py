"""modelzoo: run any trained model over image datasets in-process, fast, and
keep the predictions with the data (in MongoDB)."""

from .dataset import (
    Dataset,
    DatasetView,
    IngestReport,
    SampleCollection,
    dataset_exists,
    delete_dataset,
    delete_datasets,
    list_datasets,
    load_dataset,
)
from .engine import ApplyReport, Failure, apply_model, compute_embeddings, compute_patch_embeddings
from .errors import (
    BackendError,
    ChecksumError,
    ConfigError,
    DatabaseError,
    DatasetError,
    DatasetExistsError,
    DatasetNotFoundError,
    DownloadError,
    EvaluationError,
    ExtraNotInstalledError,
    LabelError,
    ModelError,
    ModelNotFoundError,
    ModelzooError,
    PredictionError,
    RequestError,
    RequirementsError,
    SampleError,
    SampleNotFoundError,
    TrustKeyError,
    UntrustedError,
    VideoError,
    ZooError,
)
from .expressions import ViewExpression, ViewField
from .frames import Frame
from .labels import (
    Classification,
    Classifications,
    Detection,
    Detections,
    Heatmap,
    Keypoint,
    Keypoints,
    Label,
    Segmentation,
)
from .metadata import MetadataReport
from .mixins import EmbeddingsMixin, LogitsMixin, PromptMixin, SamplesMixin, TorchModelMixin
from .models import SHORTCUTS, Call, Model, ModelConfig
from .sample import ImageMetadata, Sample, VideoMetadata
from .video import FrameSelection, VideoReader

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # data
    "Dataset",
    "DatasetView",
    "SampleCollection",
    "IngestReport",
    "Sample",
    "ImageMetadata",
    "VideoMetadata",
    "VideoReader",
    "FrameSelection",
    "Frame",
    "ViewField",
    "ViewExpression",
    "MetadataReport",
    "list_datasets",
    "load_dataset",
    "delete_dataset",
    "delete_datasets",
    "dataset_exists",
    # engine
    "apply_model",
    "compute_embeddings",
    "compute_patch_embeddings",
    "ApplyReport",
    "Failure",
    # labels
    "Label",
    "Classification",
    "Classifications",
    "Detection",
    "Detections",
    "Keypoint",
    "Keypoints",
    "Segmentation",
    "Heatmap",
    # models
    "Call",
    "Model",
    "ModelConfig",
    "EmbeddingsMixin",
    "LogitsMixin",
    "PromptMixin",
    "SamplesMixin",
    "TorchModelMixin",
    # errors
    "ModelzooError",
    "DatabaseError",
    "DatasetError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "SampleNotFoundError",
    "VideoError",
    "LabelError",
    "EvaluationError",
    "ConfigError",
    "ModelError",
    "SampleError",
    "RequestError",
    "PredictionError",
    "ZooError",
    "ModelNotFoundError",
    "DownloadError",
    "ChecksumError",
    "RequirementsError",
    "BackendError",
    "ExtraNotInstalledError",
    "UntrustedError",
    "TrustKeyError",
]

# -- the zoo -------------------------------------------------------------------------------
from .zoo import (  # noqa: E402
    ZooModelInfo,
    delete_zoo_model,
    delete_zoo_model_source,
    download_zoo_model,
    get_zoo_model_info,
    is_zoo_model_downloaded,
    list_zoo_model_sources,
    list_zoo_models,
    list_zoo_sources,
    load_zoo_model,
    register_zoo_model,
    register_zoo_model_source,
    unregister_zoo_model,
)

__all__ += [
    "ZooModelInfo",
    "list_zoo_models",
    "list_zoo_sources",
    "register_zoo_model_source",
    "list_zoo_model_sources",
    "delete_zoo_model_source",
    "get_zoo_model_info",
    "load_zoo_model",
    "download_zoo_model",
    "is_zoo_model_downloaded",
    "delete_zoo_model",
    "register_zoo_model",
    "unregister_zoo_model",
]

# -- Model's deprecated shortcuts reach their feature packages, imported on first use --------
# (the core holds the table, never the import: docs/architecture.md)


def _batcher(model: Model, **kwargs: object) -> object:
    from .serving.batcher import Batcher

    return Batcher(model, **kwargs)  # type: ignore[arg-type]


SHORTCUTS["batcher"] = _batcher

# -- imported on first use: `from modelzoo import TorchImageModel` ---------------------------
# (PEP 562) torch_image imports torch (seconds); `import modelzoo` must not.
_LAZY_ATTRIBUTES = {
    "TorchImageModel": "modelzoo.torch_image",
    "TorchImageModelConfig": "modelzoo.torch_image_config",
    "draw_labels": "modelzoo.drawing",
    "contact_sheet": "modelzoo.drawing",
}

__all__ += list(_LAZY_ATTRIBUTES)


def __getattr__(name: str) -> object:
    module = _LAZY_ATTRIBUTES.get(name)
    if module is None:
        raise AttributeError(f"module 'modelzoo' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES))
