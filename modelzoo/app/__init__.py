"""The viewer: a local web page showing a dataset's samples and labels.

``dataset.launch_app()`` (or ``modelzoo app DATASET``) starts it on
127.0.0.1 with a random token in its URL; see ``docs/viewer.md``. Needs the
``app`` extra (Starlette and uvicorn)::

    app = dataset.launch_app()
    print(app.url)       # open it in a browser
    app.close()
"""

from __future__ import annotations

from typing import Any, Optional

from .server import App, AppError

__all__ = ["App", "AppError", "launch_app"]


def launch_app(samples: Any, port: int = 0, cache_dir: Optional[str] = None, workers: Optional[int] = None) -> App:
    """Starts the viewer of ``samples`` (a dataset or view) in a background thread.

    Args:
        samples: what to show.
        port: the port on 127.0.0.1 (0: a free one).
        cache_dir: where thumbnails are kept.
        workers: processes making thumbnails (default: the CPU count, at most 8).

    Returns:
        the running :class:`App`: ``.url`` (with its token), ``.close()``.
    """
    return App(samples, port=port, cache_dir=cache_dir, workers=workers).start()
