"""The generated indexes' shared reader and writer (modelzoo.zoo.indexes)."""

import json

import pytest

from modelzoo.errors import ZooError
from modelzoo.zoo.indexes import check_or_write, read_catalog


def test_read_catalog_names_the_file_and_the_command_that_regenerates_it(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"tags": [1, 2]}))
    assert read_catalog(str(good), "python -m gen") == {"tags": [1, 2]}

    for name, content in [("missing.json", None), ("broken.json", "{not json"), ("list.json", "[1, 2]")]:
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(ZooError) as e:
            read_catalog(str(path), "python -m gen")
        assert str(path) in str(e.value) and "python -m gen" in str(e.value)


def test_check_or_write_writes_then_tells_stale_missing_and_up_to_date(tmp_path, capsys):
    path = tmp_path / "sub" / "index.json"
    assert not check_or_write(str(path), "one\n", "python -m gen", check=True)
    assert "is missing: run python -m gen" in capsys.readouterr().err
    assert not path.exists()  # a check writes nothing

    assert check_or_write(str(path), "one\n", "python -m gen")
    assert path.read_text() == "one\n"
    assert check_or_write(str(path), "one\n", "python -m gen", check=True)
    assert "is up to date" in capsys.readouterr().out

    assert not check_or_write(str(path), "two\n", "python -m gen", check=True)
    assert f"{path} is stale: run python -m gen" in capsys.readouterr().err
    assert path.read_text() == "one\n"
