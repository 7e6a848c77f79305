"""VESSL-style models: ``RunnerBase`` runners registered as ``repository/number``.

Code written for VESSL's SDK runs with one changed import (``import vessl``
-> ``import modelzoo.vessl as vessl``): :class:`RunnerBase`,
:func:`register_model` and :func:`register_torch_model` store the model in
the local zoo on this machine (``$MODELZOO_HOME/_local``), and
``modelzoo.load_zoo_model("repository/number")`` (or ``"repository"`` for
the newest number) gives a :class:`modelzoo.Model` running
``preprocess_data -> predict -> postprocess_data``.

Example::

    import modelzoo as mz
    import modelzoo.vessl as vessl

    class Sizer(vessl.RunnerBase):
        @staticmethod
        def load_model(props, artifacts):
            return open(artifacts["scale.txt"]).read()

        @staticmethod
        def predict(model, data):
            return {"size": len(data) * float(model)}

    vessl.register_model("sizer", runner_cls=Sizer, artifacts={"scale.txt": "scale.txt"})   # sizer/1
    dataset.apply_model(mz.load_zoo_model("sizer/1"), label_field="size")

See ``docs/vessl.md``.
"""

from ..zoo.local import NumberTakenError
from .errors import ArtifactError, InvalidParamsError, RunnerDefinitionError, UntrustedModelError, VesslError
from .model import RunnerModel, RunnerModelConfig
from .register import INPUTS, RegisteredModel, register_model, register_torch_model
from .runner import RunnerBase
from .session import configure, create_model_repository, init, list_model_repositories, read_model_repository, settings
from .signing import ENV_TRUST_KEY
from .volume import create_model, upload_model_volume_file

__all__ = [
    "RunnerBase",
    "register_model",
    "register_torch_model",
    "create_model",
    "upload_model_volume_file",
    "configure",
    "init",
    "settings",
    "create_model_repository",
    "read_model_repository",
    "list_model_repositories",
    "RegisteredModel",
    "RunnerModel",
    "RunnerModelConfig",
    "INPUTS",
    "ENV_TRUST_KEY",
    "VesslError",
    "InvalidParamsError",
    "RunnerDefinitionError",
    "ArtifactError",
    "NumberTakenError",
    "UntrustedModelError",
]
