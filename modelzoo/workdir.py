"""The working directory a model's own code runs in.

Tungsten models run in their build directory (the folder of the file that
defines the class, as ``tungsten build`` packages it) and VESSL runners in
their model volume, so that the relative paths their code opens
(``torch.load("./weights.pth")``) resolve the same way in ``predict``,
``apply_model``, Ray workers and ``modelzoo serve``, wherever the process was
started. :func:`model_directory` changes the directory for the duration of a
call of the model's code and restores it; a relative file the code then cannot
find raises :class:`ModelFileNotFoundError` naming that directory.

The working directory belongs to the process: while a block runs, other
threads see it too, so the blocks of all models share one (reentrant) lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, Optional

from .errors import ModelzooError

__all__ = ["model_directory", "ModelFileNotFoundError"]

_LOCK = threading.RLock()


class ModelFileNotFoundError(ModelzooError, FileNotFoundError):
    """The model's code opened a relative path that does not exist in the
    directory it runs in.

    Attributes:
        directory: the working directory of the model's code.
        missing: the path it tried to open, as written.
    """

    def __init__(self, message: str, directory: str, missing: str):
        super().__init__(message)
        self.directory = directory
        self.missing = missing
        self.filename = missing

    def __str__(self) -> str:
        return str(self.args[0])


def _is_relative(name: object) -> bool:
    return isinstance(name, (str, bytes, os.PathLike)) and not os.path.isabs(os.fsdecode(name))  # type: ignore[arg-type]


@contextlib.contextmanager
def model_directory(directory: Optional[str], who: str, what: str = "the model's directory", fix: str = "") -> Iterator[None]:
    """Runs the block with ``directory`` as the working directory (nothing
    changes when it is None), then restores the previous one.

    Args:
        directory: where the model's code runs.
        who: the code run, for messages (``"TextToImage.setup"``).
        what: what the directory is (``"its build directory"``).
        fix: how to fix a missing file, appended to the message.

    Raises:
        ModelFileNotFoundError: the block raised ``FileNotFoundError`` for a
            relative path: the message names the path and ``directory``.
    """
    if directory is None:
        yield
        return
    with _LOCK:
        before = os.getcwd()
        os.chdir(directory)
        try:
            yield
        except ModelFileNotFoundError:
            raise
        except FileNotFoundError as e:
            name = e.filename
            if not _is_relative(name):
                raise
            shown = os.fsdecode(name)  # type: ignore[arg-type]
            raise ModelFileNotFoundError(
                f"{who}: {shown!r} not found in {directory} ({what}, the working directory its code runs in, "
                f"wherever the process was started). {fix or f'Put {os.path.basename(shown)!r} in {directory}.'}",
                directory, shown,
            ) from e
        finally:
            os.chdir(before)
