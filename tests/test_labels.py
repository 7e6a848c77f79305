import numpy as np
import pytest

import modelzoo as mz
from modelzoo.encoding import decode_array, encode_array
from modelzoo.errors import LabelError
from modelzoo.labels import Detections, Label, filter_confidence, label_from_dict


def _all_labels():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 5)) > 0.5
    return [
        mz.Classification(label="cat", confidence=0.75, logits=rng.standard_normal(10).astype(np.float32)),
        mz.Classifications(
            classifications=[mz.Classification(label="a", confidence=0.9), mz.Classification(label="b", confidence=0.2)],
            logits=np.arange(3, dtype=np.float32),
        ),
        mz.Detection(label="dog", bounding_box=[0.1, 0.2, 0.3, 0.4], confidence=0.5, mask=mask, attributes={"iscrowd": 0}),
        mz.Detections(detections=[
            mz.Detection(label="a", bounding_box=[0, 0, 1, 1], confidence=0.9),
            mz.Detection(label="b", bounding_box=[0.5, 0.5, 0.25, 0.5], confidence=0.1, mask=mask),
        ]),
        mz.Keypoint(label="person", points=[[0.1, 0.2], [0.3, 0.4]], confidence=[0.9, 0.8], bounding_box=[0.0, 0.1, 0.5, 0.5]),
        mz.Keypoints(keypoints=[mz.Keypoint(label="p", points=[[0.5, 0.5]], confidence=[1.0])]),
        mz.Segmentation(mask=rng.integers(0, 21, (30, 40)).astype(np.uint8), mask_targets={"1": "person"}),
    ]


@pytest.mark.parametrize("label", _all_labels(), ids=lambda l: type(l).__name__)
def test_to_dict_from_dict_round_trip(label):
    back = label_from_dict(label.to_dict())
    assert type(back) is type(label)
    assert back == label
    # and through mongoengine's own serialisation, which must agree with ours
    assert type(label).from_dict(label.to_dict()).to_dict().keys() == label.to_dict().keys()


def test_array_encoding_round_trips_dtype_and_shape():
    for arr in [np.zeros((0, 3), np.float32), np.arange(24, dtype=np.int64).reshape(2, 3, 4),
                np.ones((512, 512), bool), np.float16([1.5, -2]), np.array(2.5),
                np.asfortranarray(np.arange(6).reshape(2, 3)), np.arange(4, dtype=">i4"), np.array(["ab", "c"])]:
        back = decode_array(encode_array(arr))
        assert back.dtype == arr.dtype and back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)


def test_masks_are_stored_compressed():
    mask = np.zeros((512, 512), bool)
    mask[100:200, 100:300] = True
    assert len(encode_array(mask)) < mask.nbytes / 10


# boxes past the image are accepted (tests/test_boxes_past_image.py); only these are refused
@pytest.mark.parametrize("box", [[0.1, 0, -0.5, 0.5], [float("nan"), 0, 0.5, 0.5], [0, 0, -0.1, 0.2], [0, 0, 0.5, -1.2], [0, 0, 1]])
def test_bad_boxes_raise_value_error_naming_field_and_value(box):
    with pytest.raises(ValueError) as e:
        mz.Detection(label="x", bounding_box=box)
    assert "bounding_box" in str(e.value)
    assert str(box[0]) in str(e.value)


def test_box_validated_on_assignment_too():
    det = mz.Detection(label="x", bounding_box=[0, 0, 0.5, 0.5])
    with pytest.raises(mz.LabelError):
        det.bounding_box = [0.9, 0.9, -0.5, 0.5]
    assert det.bounding_box == [0, 0, 0.5, 0.5]


def test_nucleus_round_trip_in_pixels():
    nucleus = {"geometry": {"x": 64.0, "y": 48.0, "width": 128.0, "height": 96.0}, "type": "box",
               "label": "car", "confidence": 0.8}
    det = mz.Detection.from_nucleus(nucleus, width=640, height=480)
    assert det.bounding_box == pytest.approx([0.1, 0.1, 0.2, 0.2])
    assert det.label == "car" and det.confidence == 0.8
    out = det.to_nucleus(640, 480)
    assert out["geometry"] == pytest.approx(nucleus["geometry"])
    assert out["type"] == "box" and out["label"] == "car" and out["confidence"] == 0.8
    dets = mz.Detections.from_nucleus([nucleus, nucleus], 640, 480)
    assert len(dets.to_nucleus(640, 480)) == 2


def test_nucleus_bad_input_named():
    with pytest.raises(mz.LabelError, match="geometry"):
        mz.Detection.from_nucleus({"label": "x"}, 10, 10)
    with pytest.raises(mz.LabelError, match="'height'"):
        mz.Detection.from_nucleus({"geometry": {"x": 1, "y": 1, "width": 2}}, 10, 10)


def test_from_abs_xyxy_clamps_and_converts():
    det = mz.Detection.from_abs_xyxy([-5, 10, 50, 130], width=100, height=120, label="a")
    assert det.bounding_box == pytest.approx([0.0, 10 / 120, 0.5, 110 / 120])


def test_filter_confidence():
    dets = mz.Detections(detections=[mz.Detection(bounding_box=[0, 0, 1, 1], confidence=c) for c in (0.1, 0.5, 0.9)])
    assert [d.confidence for d in filter_confidence(dets, 0.5).detections] == [0.5, 0.9]
    assert filter_confidence(mz.Classification(label="a", confidence=0.2), 0.3) is None
    assert filter_confidence(mz.Classification(label="a", confidence=0.4), 0.3).label == "a"


@pytest.mark.parametrize("label", _all_labels(), ids=lambda l: type(l).__name__)
def test_every_label_round_trips_through_the_database(label, tmp_path):
    ds = mz.Dataset(f"labels-{type(label).__name__}", overwrite=True)
    try:
        # written by the batched writer, read back through mongoengine and values()
        sid = ds.add_sample(str(tmp_path / "a.jpg"))
        ds.set_values("gt", {sid: label})
        assert ds[sid].gt == label
        assert ds.values("gt") == [label]
        assert _ids(ds[sid].gt) == _ids(ds.values("gt")[0]) == _ids(label)
        # written by mongoengine's save(), read back through values()
        sample = ds[sid]
        sample.other = label
        sample.save()
        assert ds.values("other") == [label]
        assert ds[sid]["other"] == label
    finally:
        ds.delete()


def test_trusted_construction_is_the_same_document():
    import pickle

    from modelzoo.labels import Classification, Detection

    for cls, values in (
        (Detection, {"label": "cat", "bounding_box": [0.1, 0.2, 0.3, 0.4], "confidence": 0.9}),
        (Detection, {"label": "dog"}),
        (Classification, {"label": "cat", "confidence": 0.5}),
    ):
        fast = cls.from_trusted(**values)
        slow = cls(id=fast.id, **values)
        assert fast == slow and fast.to_dict() == slow.to_dict() and repr(fast) == repr(slow)
        assert pickle.loads(pickle.dumps(fast)) == slow
        assert Label.from_dict(fast.to_dict()) == slow
    a = Detection.from_trusted(label="a", bounding_box=[0.0, 0.0, 0.5, 0.5], confidence=0.1)
    b = Detection.from_trusted(label="b", bounding_box=[0.5, 0.5, 0.5, 0.5], confidence=0.2)
    a.attributes["k"] = 1  # defaults are not shared between instances
    assert b.attributes == {} and a.to_dict()["attributes"] == {"k": 1}
    a.label = "renamed"
    assert a.to_dict()["label"] == "renamed"
    with pytest.raises(LabelError, match=">= 0"):  # later assignments are still validated
        a.bounding_box = [0.9, 0.9, 0.5, -0.5]
    dets = Detections(detections=[a, b])
    assert Label.from_dict(dets.to_dict()) == dets


def test_check_box_is_what_processors_validate_with():
    from modelzoo.labels import check_box

    assert check_box((0, 0.5, 1, 0.5)) == [0.0, 0.5, 1.0, 0.5]
    with pytest.raises(LabelError, match="MyProcessor: box 3 .*>= 0"):
        check_box([0.9, 0.9, -0.5, 0.5], "MyProcessor: box 3")
    with pytest.raises(LabelError, match="four numbers"):
        check_box([0.1, 0.2])


def _ids(label):
    """The ids of a label and the labels it holds, in order."""
    found = [label.id] if "id" in label._fields else []
    for name in ("detections", "classifications", "keypoints"):
        for item in getattr(label, name, None) or ():
            found += _ids(item)
    return found


def test_labels_get_stable_ids_stored_as_object_ids():
    from bson import ObjectId

    from modelzoo.labels import Classification, Detection, Keypoint

    made = [
        Detection(label="a", bounding_box=[0, 0, 0.5, 0.5]), Detection.from_trusted(label="a"),
        Classification(label="c"), Classification.from_trusted(label="c"), Keypoint(points=[[0.1, 0.2]]),
    ]
    ids = [lab.id for lab in made]
    assert all(isinstance(i, str) and ObjectId.is_valid(i) for i in ids) and len(set(ids)) == len(ids)
    for lab in made:
        stored = lab.to_dict()
        assert stored["_id"] == ObjectId(lab.id)  # an ObjectId in the document
        assert label_from_dict(stored).id == lab.id
        assert type(lab).from_dict(lab.to_mongo().to_dict() | {"_cls": type(lab).__name__}).id == lab.id
    given = Detection(id=ids[0])
    assert given.id == ids[0]
    with pytest.raises(LabelError, match="ObjectId"):
        Detection(id="not-an-id")
