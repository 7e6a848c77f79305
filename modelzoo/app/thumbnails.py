"""Thumbnails, made once in worker processes and cached on disk.

The cache key is the file's absolute path, modification time and size (and
the thumbnail size), so a changed file gets a new thumbnail and an
unchanged one is never made twice, across runs. Thumbnails are made by
worker processes (decoding is CPU-bound and holds the GIL): the server
submits each page's files when it lists the page, and a thumbnail request
waits for its file's job; nothing is decoded in the server's threads.

The workers run this file as a script (``python -c <run_path this file>``,
one JSON job per line on stdin, one answer per line on stdout): it imports
PIL and PyAV only, starts in a fraction of a second, and, unlike a
``multiprocessing`` pool started with ``spawn``, never re-runs the caller's
``__main__`` script (``launch_app()`` at the top level of a script without a
``__main__`` guard must work), nor forks a process that has threads.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["ThumbnailCache", "make_thumbnail", "THUMB_SIZE", "default_cache_dir"]

#: the longest side of a thumbnail, in pixels
THUMB_SIZE = 320


def default_cache_dir() -> str:
    """``$MODELZOO_HOME/app/thumbnails`` (``~/.modelzoo`` by default)."""
    home = os.environ.get("MODELZOO_HOME") or os.path.join(os.path.expanduser("~"), ".modelzoo")
    return os.path.join(home, "app", "thumbnails")


def make_thumbnail(src: str, dst: str, size: int = THUMB_SIZE, video: bool = False) -> str:
    """Writes a JPEG thumbnail of the image (upright: EXIF orientation
    applied) or of a video's first frame at ``dst``; returns ``dst``.
    Runs in a worker process."""
    from PIL import Image, ImageOps

    if video:
        import av

        with av.open(src) as container:
            frame = next(container.decode(video=0))
            img = frame.to_image()
    else:
        img = Image.open(src)
        if img.format == "JPEG":
            img.draft("RGB", (size, size))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly
        img = ImageOps.exif_transpose(img)
    img.thumbnail((size, size), Image.Resampling.BILINEAR)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img).convert("RGB")
    os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
    tmp = f"{dst}.{os.getpid()}.tmp"
    # private, as the images are: a thumbnail shows what its file shows
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        img.save(f, format="JPEG", quality=85)
    os.replace(tmp, dst)  # atomic: a reader never sees half a file
    return dst


class ThumbnailCache:
    """Thumbnails of media files, on disk, made by worker processes.

    Args:
        cache_dir: where thumbnails are kept (default: :func:`default_cache_dir`).
        workers: processes making them (default: the CPU count, at most 8),
            started on the first job.
        size: the longest side.
    """

    def __init__(self, cache_dir: Optional[str] = None, workers: Optional[int] = None, size: int = THUMB_SIZE):
        self.cache_dir = os.path.abspath(cache_dir or default_cache_dir())
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        self.size = int(size)
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._queue: "queue.Queue[Optional[Tuple[str, str, bool, cf.Future[str]]]]" = queue.Queue()
        self._threads: List[threading.Thread] = []
        self._procs: List[subprocess.Popen] = []
        self._jobs: Dict[str, "cf.Future[str]"] = {}
        self._lock = threading.Lock()
        self._closed = False

    def path_for(self, src: str) -> str:
        """Where the thumbnail of ``src`` (as it is now) is, or will be, kept.

        Raises:
            OSError: ``src`` cannot be read (missing, no permission).
        """
        st = os.stat(src)
        key = hashlib.sha1(f"{os.path.abspath(src)}\0{st.st_mtime_ns}\0{st.st_size}\0{self.size}".encode()).hexdigest()
        return os.path.join(self.cache_dir, key[:2], key + ".jpg")

    def submit(self, src: str, video: bool = False) -> "cf.Future[str]":
        """The job making ``src``'s thumbnail (done at once when it is cached).

        Raises:
            OSError: ``src`` cannot be read.
        """
        dst = self.path_for(src)
        with self._lock:
            job = self._jobs.get(dst)
            if job is not None and not (job.done() and job.exception() is not None):
                return job
            if os.path.exists(dst):
                done: "cf.Future[str]" = cf.Future()
                done.set_result(dst)
                return done
            if self._closed:
                raise RuntimeError("the thumbnail cache is closed")
            if not self._threads:
                for i in range(self.workers):
                    thread = threading.Thread(target=self._dispatch, name=f"modelzoo-thumbnails-{i}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            job = cf.Future()
            self._jobs[dst] = job
            if len(self._jobs) > 10000:  # forget finished jobs: their files are on disk
                self._jobs = {k: v for k, v in self._jobs.items() if not v.done()}
        self._queue.put((src, dst, video, job))
        return job

    def _start_worker(self) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN, os.path.abspath(__file__)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        with self._lock:
            self._procs.append(proc)
        return proc

    def _dispatch(self) -> None:
        """One worker process's feeder: jobs from the queue, answers to their futures."""
        proc: Optional[subprocess.Popen] = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            src, dst, video, job = item
            if not job.set_running_or_notify_cancel():
                continue
            try:
                if proc is None or proc.poll() is not None:
                    proc = self._start_worker()
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(json.dumps({"src": src, "dst": dst, "size": self.size, "video": video}) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"the thumbnail worker stopped while making the thumbnail of {src}")
                answer = json.loads(line)
                if answer.get("error"):
                    raise OSError(f"Cannot make a thumbnail of {src}: {answer['error']}")
                job.set_result(dst)
            except BaseException as e:
                job.set_exception(e)
        if proc is not None:
            _stop(proc)

    def close(self) -> None:
        """Stops the workers; jobs not started are cancelled. Idempotent."""
        with self._lock:
            self._closed = True
            threads, procs = list(self._threads), list(self._procs)
        while True:  # cancel what is queued
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[3].cancel()
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(30)
        for proc in procs:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the worker's loop ends at end of input
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            stream.close()


#: the worker's command: this file as a script, with neither the current directory nor this
#: file's directory on sys.path (its neighbours, such as state.py, must not shadow a module)
_WORKER_MAIN = "import runpy, sys; sys.path.pop(0); runpy.run_path(sys.argv[1], run_name='__modelzoo_thumbnail_worker__')"


def _worker() -> None:
    """The worker's loop: a JSON job per line in, a JSON answer per line out."""
    for line in sys.stdin:
        job: Dict[str, Any] = json.loads(line)
        try:
            make_thumbnail(job["src"], job["dst"], job["size"], job["video"])
            answer: Dict[str, Any] = {"ok": True}
        except Exception as e:  # a per-file error: answer it, keep serving
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__modelzoo_thumbnail_worker__":
    _worker()
