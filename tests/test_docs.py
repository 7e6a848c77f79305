"""Every ```python block in docs/*.md runs (blocks of one file share a namespace)."""

import os
import re

import pytest

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
FILES = sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))


@pytest.mark.parametrize("name", FILES)
@pytest.mark.slow
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


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's ten lines, on real photographs in ./photos."""
    import skimage.data
    from PIL import Image

    import modelzoo as mz

    root = os.path.dirname(DOCS)
    text = open(os.path.join(root, "README.md")).read()
    block = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(skimage.data, name)()).save(tmp_path / "photos" / f"{name}.jpg")
    if "photos" in mz.list_datasets():
        mz.delete_dataset("photos")
    namespace = {"__name__": "__readme__"}
    try:
        exec(compile(block, "README.md", "exec"), namespace)
        assert namespace["report"].processed == 2
        assert namespace["embeddings"].shape == (2, 1280)
        labels = namespace["dataset"].values("imagenet.label")
        assert labels[0] == "Egyptian cat" and labels[1] == "espresso"
    finally:
        mz.delete_dataset("photos")
