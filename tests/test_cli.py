"""The ``modelzoo`` command: zoo commands, datasets, db; --help everywhere; one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

import modelzoo as mz
from modelzoo import zoo
from modelzoo.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("zoo_env")


@pytest.fixture
def digit_dir(tmp_path):
    from modelzoo.zoo.digits import digits_split, write_digit_images

    _, _, images, labels = digits_split()
    d = tmp_path / f"digits-{uuid.uuid4().hex[:6]}"
    write_digit_images(images[:20], labels[:20], str(d))
    return d


def _commands(parser):
    """Every command path, e.g. ("db", "status")."""
    import argparse

    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((name,))
                out.extend((name, *rest) for rest in _commands(sub))
    return out


def test_help_everywhere(capsys):
    assert main(["--help"]) == 0
    commands = _commands(build_parser())
    for expected in [("list",), ("info",), ("download",), ("apply",), ("embed",), ("datasets",), ("db", "status"), ("db", "stop")]:
        assert expected in commands
    for cmd in commands:
        assert main([*cmd, "--help"]) == 0, cmd
        assert "usage: modelzoo " + " ".join(cmd) in capsys.readouterr().out


def test_list_and_info(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mobilenet-v2-imagenet-torch@1.0" in out and "digits-cnn-torch@1.0" in out
    assert main(["list", "--tags", "digits", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == ["digits-cnn-torch"]
    assert main(["list", "--pattern", "no-such-thing"]) == 0
    assert "No zoo models match" in capsys.readouterr().out
    assert main(["info", "mobilenet-v2-imagenet-torch"]) == 0
    out = capsys.readouterr().out
    assert "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889" in out and "cache_path" in out
    assert main(["info", "digits-cnn-torch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"]["filename"] == "digits_cnn-9165c729.pth"


def test_errors_are_one_line_with_a_nonzero_exit(capsys, monkeypatch):
    assert main(["info", "resnet-50"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modelzoo: error: Unknown zoo model 'resnet-50'.")
    assert "resnet50-imagenet-torch" in err
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    assert main(["download", "resnet50-imagenet-torch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in err
    assert main(["apply", "digits-cnn-torch", f"no-such-dataset-{uuid.uuid4().hex[:6]}", "--label-field", "x"]) == 1
    assert "not found" in capsys.readouterr().err
    # --label-field defaults to predictions (as apply_model): the command gets as far as the dataset
    assert main(["apply", "digits-cnn-torch", f"nowhere-{uuid.uuid4().hex[:6]}"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_download_and_delete(capsys):
    assert main(["download", "digits-cnn-torch", "--quiet"]) == 0
    assert "digits_cnn-9165c729.pth" in capsys.readouterr().out
    assert main(["delete", "digits-cnn-torch"]) == 0
    assert "digits-cnn-torch@1.0" in capsys.readouterr().out


def test_apply_to_a_directory_then_to_the_dataset_then_embed(digit_dir, capsys):
    name = f"cli-digits-{uuid.uuid4().hex[:8]}"
    try:
        assert main(["apply", "digits-cnn-torch", str(digit_dir), "--dataset-name", name, "--label-field", "pred", "--show", "5"]) == 0
        out = capsys.readouterr().out
        assert f"Created dataset {name!r}" in out and "20 processed, 0 failed" in out
        assert "0000_label2.png" in out  # the table of the first predictions
        dataset = mz.load_dataset(name)
        labels = dataset.values("pred")
        assert len(labels) == 20 and all(l is not None for l in labels)
        correct = sum(l.label == os.path.basename(p).split("label")[1][0] for p, l in zip(dataset.values("filepath"), labels))
        assert correct >= 19

        # the same dataset by name; ingesting the directory again under its name is refused
        assert main(["apply", "digits-cnn-torch", name, "--label-field", "pred2", "--show", "0", "--confidence-thresh", "0.5"]) == 0
        assert dataset.count("pred2") >= 1
        assert main(["apply", "digits-cnn-torch", str(digit_dir), "--dataset-name", name, "--label-field", "x"]) == 1
        assert "already exists" in capsys.readouterr().err

        assert main(["embed", "digits-cnn-torch", name, "--embeddings-field", "emb"]) == 0
        vec = dataset.values("emb")[0]
        assert len(vec) == 256

        assert main(["datasets"]) == 0
        out = capsys.readouterr().out
        assert name in out
        assert main(["datasets", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert {"name": name, "samples": 20} in rows
    finally:
        if mz.dataset_exists(name):
            mz.delete_dataset(name)


def test_db_commands_still_work(capsys):
    assert main(["db", "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["running"] is True
    assert os.getpid() in [c["pid"] for c in info["clients"]]  # this process uses it
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert f"{os.getpid()} (" in out and "stops" in out and "after its last client exits" in out


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "modelzoo", "list", "--tags", "digits"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "digits-cnn-torch@1.0" in result.stdout
