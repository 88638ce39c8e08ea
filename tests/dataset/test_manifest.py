import json

import pytest

from ctscribe.errors import CtscribeError
from ctscribe.labels import CTRATE_LABELS
from dataset.manifest import Question, Sample, read_manifest, write_manifest


def _labels(value=0):
    return {n: value for n in CTRATE_LABELS}


def test_roundtrip_keeps_everything_and_stores_relative_paths(tmp_path):
    vol = tmp_path / "vols" / "a.nii.gz"
    vol.parent.mkdir()
    vol.write_bytes(b"x")
    sample = Sample(
        id="a",
        volume=str(vol),
        findings="F.",
        impression="I.",
        labels=_labels(1),
        questions=(
            Question("Is there effusion?", "no", "mcq", ("yes", "no")),
            Question("Describe the heart.", "Normal size.", "free"),
        ),
        split="valid",
        hu_source="raw",
        rescale_slope=1.0,
        rescale_intercept=-1024.0,
        spacing_mm_zyx=(1.5, 0.75, 0.75),
    )
    path = write_manifest(tmp_path / "m.jsonl", [sample])
    row = json.loads(path.read_text())
    assert row["volume"] == "vols/a.nii.gz"  # relative: the folder can move
    (back,) = read_manifest(path, check_files=True)
    assert back == sample
    assert back.report == "F.\nI."


def _write(tmp_path, rows):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"labels": {"Cardiomegaly": 1}}, "exactly the 18"),
        ({"labels": {**_labels(), "Cardiomegaly": 2}}, "must be 0 or 1"),
        ({"questions": [{"question": "q?", "choices": ["a", "b"], "answer": "c", "kind": "mcq"}]}, "not one of"),
        ({"questions": [{"question": "q?", "answer": "a", "kind": "essay"}]}, "'kind'"),
        ({"hu_source": "maybe"}, "hu_source"),
        ({"rescale_slope": 0}, "rescale_slope"),
        ({"spacing_mm_zyx": [1, 0, 1]}, "positive"),
        ({"id": ""}, "'id'"),
    ],
)
def test_validation_names_the_line_and_the_problem(tmp_path, bad, message):
    good = {"id": "a", "volume": "a.nii.gz"}
    path = _write(tmp_path, [good | {"id": "z"}, good | bad])
    with pytest.raises(CtscribeError) as err:
        read_manifest(path)
    assert err.value.code.value == "invalid_request"
    assert f"{path}:2" in err.value.message and message in err.value.message


def test_duplicate_ids_bad_json_and_missing_files(tmp_path):
    path = _write(tmp_path, [{"id": "a", "volume": "a.nii"}, {"id": "a", "volume": "b.nii"}])
    with pytest.raises(CtscribeError, match="duplicate id"):
        read_manifest(path)
    path.write_text('{"id": "a", "volume": "a.nii"}\n{not json\n')
    with pytest.raises(CtscribeError, match=":2: not valid JSON"):
        read_manifest(path)
    path.write_text('{"id": "a", "volume": "a.nii"}\n')
    assert read_manifest(path)[0].volume == str(tmp_path.resolve() / "a.nii")
    with pytest.raises(CtscribeError, match="volume file not found"):
        read_manifest(path, check_files=True)
    with pytest.raises(CtscribeError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_mcq_kind_is_inferred_from_choices():
    q = Question.from_dict({"question": "q?", "choices": ["x", "y"], "answer": "y"})
    assert q.kind == "mcq" and q.choices == ("x", "y")
