"""Model bundles, Launch and Nucleus style, run in-process.

A bundle is ``load_model_fn`` + ``load_predict_fn`` (or a zip of code, or a
command serving HTTP), an ``app_config``, request and response schemas and
requirements: one immutable, content-addressed version (:class:`ModelBundle`).
:class:`LaunchClient` has the methods of Scale Launch's client and keeps
bundles in the modelzoo database; ``bundle.to_model()`` is a
:class:`modelzoo.Model` for ``apply_model`` and the zoo.

Example::

    from modelzoo.bundles import LaunchClient

    client = LaunchClient()
    bundle_id = client.create_model_bundle_from_callable_v2(
        model_bundle_name="doubler", load_model_fn=lambda: (lambda x: 2 * x),
        load_predict_fn=lambda model: (lambda x: model(x)), request_schema=None,
        response_schema=None, input="request", input_fields={"x": "x"},
    ).model_bundle_id
    model = client.get_model_bundle_v2(bundle_id).to_model()
    model.predict({"x": 3})    # 6

See ``docs/bundles.md``.
"""

from .bundle import INPUTS, UNSET, ModelBundle
from .client import CreateModelBundleV2Response, LaunchClient, ListModelBundlesV2Response, parse_requirements
from .errors import (
    BundleConfigError,
    BundleError,
    BundleNotFoundError,
    BundlePredictError,
    BundleRequestError,
    BundleServerError,
    RequestSchemaError,
    SchemaError,
    UnsafeArchiveError,
    UntrustedBundleError,
)
from .flavors import (
    CloudpickleArtifactFlavor,
    RunnableImageFlavor,
    StreamingEnhancedRunnableImageFlavor,
    TritonEnhancedRunnableImageFlavor,
    ZipArtifactFlavor,
)
from .model import BundleModel
from .nucleus import detection_to_box, detections_from_boxes, export_nucleus, label_to_boxes
from .schemas import Schema
from .stored import StoredBundleConfig, StoredBundleModel

__all__ = [
    "StoredBundleModel",
    "StoredBundleConfig",
    "ModelBundle",
    "BundleModel",
    "LaunchClient",
    "CreateModelBundleV2Response",
    "ListModelBundlesV2Response",
    "CloudpickleArtifactFlavor",
    "ZipArtifactFlavor",
    "RunnableImageFlavor",
    "TritonEnhancedRunnableImageFlavor",
    "StreamingEnhancedRunnableImageFlavor",
    "Schema",
    "INPUTS",
    "UNSET",
    "parse_requirements",
    "export_nucleus",
    "detections_from_boxes",
    "detection_to_box",
    "label_to_boxes",
    "BundleError",
    "BundleConfigError",
    "BundleNotFoundError",
    "UntrustedBundleError",
    "UnsafeArchiveError",
    "SchemaError",
    "RequestSchemaError",
    "BundleRequestError",
    "BundlePredictError",
    "BundleServerError",
]
