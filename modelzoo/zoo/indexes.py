"""The generated indexes the zoo lists from (``modelzoo/zoo/catalogs/*.json``).

A generator module (:mod:`modelzoo.zoo.generate` for torchvision,
:mod:`modelzoo.zoo.generate_timm`, :mod:`modelzoo.zoo.generate_libs` for
transformers and Ultralytics) writes each index from the installed
library; the library's zoo source reads it back without importing the
library. What they share lives here: where the indexes are, how one is
read, and how a generator writes one or checks (``--check``) that the
shipped file is what it would write.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict

from ..errors import ZooError

__all__ = ["CATALOG_DIR", "read_catalog", "check_or_write"]

#: the folder of the shipped indexes
CATALOG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalogs")


def read_catalog(path: str, command: str) -> Dict[str, Any]:
    """The JSON object of the generated index at ``path``.

    Args:
        path: the index file.
        command: the command that regenerates it, named in the error.

    Raises:
        ZooError: the file is missing, unreadable or not a JSON object (the
            error names the file and how to get it back).
    """
    fix = f"regenerate it with `{command}`"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ZooError(f"Cannot read the zoo's generated index {path}: {e}; {fix}") from e
    if not isinstance(data, dict):
        raise ZooError(f"The zoo's generated index {path} holds a {type(data).__name__}, not a JSON object; {fix}")
    return data


def check_or_write(path: str, text: str, command: str, check: bool = False) -> bool:
    """Writes ``text`` to ``path`` or, with ``check``, compares them.

    Args:
        path: the index file (its folder is made when writing).
        text: what the generator makes now.
        command: the command that regenerates ``path``, named when it is stale.
        check: compare instead of writing; prints ``PATH is up to date`` on
            stdout, or ``PATH is stale: run COMMAND`` (``is missing``) on stderr.

    Returns:
        Whether ``path`` holds ``text``: always True after a write.
    """
    if check:
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            print(f"{path} is missing: run {command}", file=sys.stderr)
            return False
        if current != text:
            print(f"{path} is stale: run {command}", file=sys.stderr)
            return False
        print(f"{path} is up to date")
        return True
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return True
