"""Every ```python block in docs/*.md runs (blocks of one file share a namespace)."""

import os
import re

import pytest

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
FILES = sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))


@pytest.mark.parametrize("name", FILES)
def test_doc_examples_run(name, tmp_path, monkeypatch):
    text = open(os.path.join(DOCS, name)).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    if not blocks:
        pytest.skip(f"{name} has no python examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELZOO_HOME", str(tmp_path / "home"))
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{name}[block {i}]", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{name}, example {i + 1} failed: {type(e).__name__}: {e}\n{block}") from e
