"""FiftyOne's model API beyond its tests: FiftyOne-style embeddings
(``predict`` then ``get_embeddings()``), ``PromptMixin``, and unknown keywords
named truthfully."""

from __future__ import annotations

import numpy as np
import pytest

import modelzoo as fo
from tests.images import photo


class LastPredictEmbedder(fo.EmbeddingsMixin, fo.Model):
    """FiftyOne's style: ``predict`` remembers, ``get_embeddings`` returns a batch of one."""

    def predict(self, arg):
        arr = np.asarray(arg, dtype=np.float32)
        self._last = np.concatenate([arr.mean(axis=(0, 1)), arr.std(axis=(0, 1))])[None]  # (1, 6)
        return fo.Classification(label="bright" if arr.mean() > 100 else "dark")

    def get_embeddings(self):
        return self._last


def _by_hand(image):
    arr = np.asarray(image, dtype=np.float32)
    return np.concatenate([arr.mean(axis=(0, 1)), arr.std(axis=(0, 1))])


def test_get_embeddings_style_gives_embed_and_embed_all():
    model = LastPredictEmbedder()
    images = [photo("astronaut")[:64, :64], photo("coffee")[:48, :80]]
    np.testing.assert_allclose(model.embed(images[0]), _by_hand(images[0]), rtol=1e-6)
    got = model.embed_all(images)
    assert got.shape == (2, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.stack([_by_hand(i) for i in images]), rtol=1e-6)


def test_a_model_with_no_embedding_method_says_which_to_implement():
    class Nothing(fo.EmbeddingsMixin, fo.Model):
        def predict(self, arg):
            return None

    with pytest.raises(NotImplementedError, match="get_embeddings"):
        Nothing().embed_all([np.zeros((2, 2, 3), np.uint8)])


def test_compute_embeddings_with_a_fiftyone_style_model(db, tmp_path):
    from PIL import Image

    from tests.images import write_photos

    paths = write_photos(str(tmp_path), ["astronaut", "coffee", "chelsea"])
    ds = fo.Dataset("fo-api-embed", overwrite=True)
    try:
        ds.add_samples([fo.Sample(filepath=p) for p in paths])
        got = ds.compute_embeddings(LastPredictEmbedder())
        expected = np.stack([_by_hand(np.asarray(Image.open(p).convert("RGB"))) for p in paths])
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    finally:
        ds.delete()


class Prompter(fo.PromptMixin, fo.Model):
    """Embeds a prompt as letter counts (a fixed, checkable embedding)."""

    def predict(self, arg):
        return None

    def embed_prompt(self, arg):
        return np.array([arg.count(c) for c in "aeiou"], dtype=np.float32)


def test_prompt_mixin_names_and_batching():
    model = Prompter()
    assert model.can_embed_prompts
    np.testing.assert_array_equal(model.embed_prompt("a photo of a cat"), [3, 0, 0, 3, 0])
    got = model.embed_prompts(["banana", "kiwi", "eel"])
    assert got.shape == (3, 5)
    np.testing.assert_array_equal(got, [[3, 0, 0, 0, 0], [0, 0, 2, 0, 0], [0, 2, 0, 0, 0]])

    class Batch(fo.PromptMixin, fo.Model):
        def predict(self, arg):
            return None

        def embed_prompts(self, args):
            return np.stack([[len(a)] for a in args]).astype(np.float32)

    assert Batch().embed_prompt("four").tolist() == [4.0]

    class Neither(fo.PromptMixin, fo.Model):
        def predict(self, arg):
            return None

    with pytest.raises(NotImplementedError, match="embed_prompt"):
        Neither().embed_prompts(["x"])


def test_unknown_keyword_lists_every_valid_keyword_and_suggests_the_right_one(db):
    import inspect

    ds = fo.Dataset("fo-api-keywords", overwrite=True)
    try:
        ds.add_samples([fo.Sample(filepath="/nowhere/a.jpg")])
        with pytest.raises(fo.ConfigError) as e:
            ds.apply_model(LastPredictEmbedder(), labelfield="x")
        msg = str(e.value)
        assert "'labelfield'" in msg and "Did you mean 'label_field'?" in msg
        assert msg.index("'label_field'") < msg.index("Valid arguments")
        named = [p for p in inspect.signature(fo.apply_model).parameters if p not in ("samples", "model", "kwargs")]
        listed = msg.split("Valid arguments: ")[1].rstrip(".").split(", ")
        assert set(named) <= set(listed)
        with pytest.raises(fo.ConfigError, match="embeddings_field"):
            ds.compute_embeddings(LastPredictEmbedder(), embedding_field="e")
    finally:
        ds.delete()


class Declared(fo.EmbeddingsMixin, fo.Model):
    """Declares its width; fails on images narrower than 8 pixels."""

    embedding_dim = 6

    def predict(self, arg):
        return None

    def embed(self, arg):
        if np.asarray(arg).shape[1] < 8:
            raise ValueError("too narrow")
        return _by_hand(arg)


class Undeclared(fo.EmbeddingsMixin, fo.Model):
    """Fails on every input, the black probe included: its width cannot be known."""

    def predict(self, arg):
        return None

    def embed(self, arg):
        raise ValueError("always fails")


def test_all_failed_runs_give_nan_rows_of_the_declared_width_or_raise(db, tmp_path):
    ds = fo.Dataset("fo-api-width", overwrite=True)
    try:
        ds.add_samples([fo.Sample(filepath=str(tmp_path / f"missing{i}.png")) for i in range(3)])
        got = ds.compute_embeddings(Declared())
        assert got.shape == (3, 6) and got.dtype == np.float32 and np.isnan(got).all()
        # a FiftyOne-style model without a declared width: its width from one probe embedding
        got = ds.compute_embeddings(LastPredictEmbedder())
        assert got.shape == (3, 6) and np.isnan(got).all()
        with pytest.raises(fo.ModelError, match="embedding_dim"):
            ds.compute_embeddings(Undeclared())
        with pytest.raises(fo.PredictionError, match="missing0.png"):
            ds.compute_embeddings(Declared(), skip_failures=False)
    finally:
        ds.delete()


def test_some_failed_rows_are_nan_the_others_exact(db, tmp_path):
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.fromarray(photo("coffee")[:40, :60]).save(wide)
    narrow = tmp_path / "narrow.png"
    Image.fromarray(photo("coffee")[:40, :4]).save(narrow)
    ds = fo.Dataset("fo-api-partial", overwrite=True)
    try:
        ds.add_samples([fo.Sample(filepath=str(p)) for p in (wide, narrow, wide)])
        got = ds.compute_embeddings(Declared())
        assert got.shape == (3, 6)
        assert np.isnan(got[1]).all()
        expected = _by_hand(np.asarray(Image.open(wide).convert("RGB")))
        np.testing.assert_allclose(got[[0, 2]], [expected, expected], rtol=1e-5)
    finally:
        ds.delete()


def test_delete_datasets_by_pattern(db):
    for name in ("fo-del-a", "fo-del-b", "fo-keep"):
        fo.Dataset(name, overwrite=True)
    try:
        assert sorted(fo.delete_datasets("fo-del-*")) == ["fo-del-a", "fo-del-b"]
        names = set(fo.list_datasets())
        assert "fo-keep" in names and not names & {"fo-del-a", "fo-del-b"}
        assert db["datasets"].count_documents({"name": {"$in": ["fo-del-a", "fo-del-b"]}}) == 0
    finally:
        fo.delete_datasets("fo-keep")
