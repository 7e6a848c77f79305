"""Evaluations are remembered: one record per ``(dataset, eval_key)`` in the
``evaluations`` collection, with the results and the fields the evaluation
wrote, so that deleting it (or running it again) removes them."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, List

from ..errors import DatasetError, EvaluationError, did_you_mean
from ..fields import check_field_name
from ..storage import DATASET_RECORDS, collection
from .results import EvaluationResults, results_from_dict

__all__ = [
    "COLLECTION", "save_evaluation", "list_evaluations", "load_evaluation", "delete_evaluation", "evaluation_record",
    "match_eval",
]

COLLECTION = DATASET_RECORDS["evaluations"]  # Dataset.delete() deletes a dataset's records there


def _records() -> Any:
    return collection(COLLECTION)


def save_evaluation(dataset_name: str, results: EvaluationResults, written: Dict[str, Any]) -> None:
    """Stores ``results`` under ``(dataset_name, results.eval_key)``, replacing any earlier one.

    Args:
        written: ``{"sample_fields": [...], "object_fields": {label field: [attribute keys]}}``.
    """
    _records().replace_one(
        {"dataset": dataset_name, "eval_key": results.eval_key},
        {
            "dataset": dataset_name, "eval_key": results.eval_key, "results": results.to_dict(),
            "written": written, "created_at": _dt.datetime.now(_dt.timezone.utc),
        },
        upsert=True,
    )


def list_evaluations(dataset_name: str) -> List[str]:
    """The eval_keys stored for a dataset, sorted."""
    return sorted(r["eval_key"] for r in _records().find({"dataset": dataset_name}, {"eval_key": 1}))


def evaluation_record(dataset_name: str, eval_key: str) -> Dict[str, Any]:
    """The stored record of an evaluation.

    Raises:
        EvaluationError: no evaluation of that key (the keys that exist are listed).
    """
    record = _records().find_one({"dataset": dataset_name, "eval_key": eval_key})
    if record is None:
        keys = list_evaluations(dataset_name)
        raise EvaluationError(
            f"Dataset {dataset_name!r} has no evaluation {eval_key!r}." + did_you_mean(eval_key, keys)
            + f" Evaluations: {', '.join(keys) or 'none'}."
        )
    return record


def match_eval(samples: Any, eval_key: str, kind: str) -> Any:
    """The samples of ``samples`` with results of ``kind`` under ``eval_key``:
    ``"tp"``, ``"fp"`` or ``"fn"`` for detections (at least one such object);
    ``"correct"`` or ``"incorrect"`` for classifications (what
    ``SampleCollection.match_eval`` returns).

    Raises:
        DatasetError: ``kind`` is not one of the evaluation's kinds (they are listed).
    """
    record = evaluation_record(samples.name, eval_key)
    detection = record["results"]["kind"] == "detection"
    kinds = ("tp", "fp", "fn") if detection else ("correct", "incorrect")
    if kind not in kinds:
        raise DatasetError(f"match_eval({eval_key!r}, {kind!r}): kind must be one of {', '.join(kinds)}")
    if detection:
        return samples.match({f"{eval_key}_{kind}": {"$gt": 0}})
    return samples.match({eval_key: kind == "correct"})


def load_evaluation(dataset_name: str, eval_key: str) -> EvaluationResults:
    """The results of a stored evaluation."""
    return results_from_dict(evaluation_record(dataset_name, eval_key)["results"])


def delete_evaluation(dataset_name: str, samples_collection: str, eval_key: str, missing_ok: bool = False) -> bool:
    """Removes an evaluation's record and every field it wrote on the samples
    and their labels.

    Returns:
        whether there was one to delete.
    """
    record = _records().find_one({"dataset": dataset_name, "eval_key": eval_key})
    if record is None:
        if missing_ok:
            return False
        evaluation_record(dataset_name, eval_key)  # raises, listing the keys
    coll = collection(samples_collection)
    written = record.get("written") or {}
    fields = [check_field_name(f) for f in written.get("sample_fields", [])]
    if fields:
        coll.update_many({}, {"$unset": {f: "" for f in fields}})
    for label_field, keys in (written.get("object_fields") or {}).items():
        array = f"{label_field}.detections"
        if keys:
            coll.update_many(
                {array: {"$type": "array"}},
                {"$unset": {f"{array}.$[].attributes.{k}": "" for k in keys}},
            )
    _records().delete_one({"_id": record["_id"]})
    return True


def delete_dataset_evaluations(dataset_name: str) -> int:
    """Forgets every evaluation record of a dataset (when it is deleted)."""
    return int(_records().delete_many({"dataset": dataset_name}).deleted_count)


__all__ += ["delete_dataset_evaluations"]
