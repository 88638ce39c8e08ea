"""`eval generate`: every work item predicted once, grouped by kind in manifest order; a killed run resumes to the same file."""

import json
from dataclasses import replace

import pytest
import torch

from ctscribe.errors import CtscribeError
from dataset.manifest import read_manifest, write_manifest
from dataset.phantom_import import import_phantom
from eval.generate import PREDICTIONS, GenerateConfig, generate, read_done, work_items
from imaging.phantom import PhantomConfig
from imaging.phantom.dataset import write_dataset

CHECKPOINT = "preset:tiny"  # seeded random weights: identical predictions on every build


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    write_dataset(root, 3, seed=5, split="valid", config=PhantomConfig(shape_zyx=(24, 48, 48), spacing_mm_zyx=(8.0, 6.0, 6.0)))
    samples = import_phantom(root).samples
    # Two questions of each kind per volume keep the run short but exercise both.
    trimmed = []
    for s in samples:
        mcq = [q for q in s.questions if q.kind == "mcq"][:2]
        free = [q for q in s.questions if q.kind == "free"][:1]
        trimmed.append(replace(s, questions=tuple(mcq + free)))
    return write_manifest(root / "manifest.jsonl", trimmed)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CONFIG = GenerateConfig(batch_size=2, max_new_tokens=6, progress=False)


def test_every_item_once_in_order_with_what_score_needs(manifest, tmp_path):
    from eval.score import read_predictions, score_records

    path = generate(CHECKPOINT, manifest, tmp_path, CONFIG)
    assert path == tmp_path / PREDICTIONS
    records = [json.loads(line) for line in path.read_text().splitlines()]
    expected = [it.key for it in work_items(read_manifest(manifest), CONFIG.kinds)]
    assert [r["key"] for r in records] == expected
    kinds = [r["kind"] for r in records]
    assert kinds == sorted(kinds, key=("report", "mcq", "free").index)  # grouped, so batches are full
    assert set(kinds) == {"report", "mcq", "free"}
    for r in records:
        if r["kind"] == "mcq":
            assert r["choices"][r["predicted_index"]] == r["prediction"]
            assert r["choices"][r["answer_index"]] == r["reference"]
            assert sum(r["probabilities"]) == pytest.approx(1.0)
        if r["kind"] == "report":
            assert set(r["labels"]) == set(r["labels_pred"]) and len(r["labels"]) == 18
    metrics, _ = score_records(read_predictions(path))  # the file is what `eval score` reads
    assert metrics["n"] == {k: sum(r["kind"] == k for r in records) for k in ("report", "mcq", "free")}


def test_killed_run_resumes_to_the_same_file(manifest, tmp_path):
    whole = generate(CHECKPOINT, manifest, tmp_path / "whole", CONFIG).read_bytes()

    # A run killed after a few items, mid-way through writing the next line.
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    lines = whole.splitlines(keepends=True)
    (resumed_dir / PREDICTIONS).write_bytes(b"".join(lines[:4]) + lines[4][:25])
    assert len(read_done(resumed_dir / PREDICTIONS)) == 4  # the torn line is dropped, not parsed

    resumed = generate(CHECKPOINT, manifest, resumed_dir, CONFIG).read_bytes()
    _assert_same_records(resumed, whole)
    # A finished run is a no-op: not a byte changes.
    assert generate(CHECKPOINT, manifest, resumed_dir, CONFIG).read_bytes() == resumed


def _assert_same_records(got: bytes, want: bytes) -> None:
    """The same records in the same order. Multiple-choice probabilities are compared to 1e-6:
    the resumed run batches the remaining items differently, and a batch's padding moves the
    last bits of a float32 score (the chosen option and every token of text are identical)."""
    import json

    import pytest

    got_rows = [json.loads(line) for line in got.splitlines()]
    want_rows = [json.loads(line) for line in want.splitlines()]
    assert [r["key"] for r in got_rows] == [r["key"] for r in want_rows]
    for g, w in zip(got_rows, want_rows):
        if g["kind"] == "mcq":
            assert g.pop("probabilities") == pytest.approx(w.pop("probabilities"), abs=1e-6)
        assert g == w


def test_kinds_filter_and_bad_config(manifest, tmp_path):
    path = generate(CHECKPOINT, manifest, tmp_path, GenerateConfig(kinds=("mcq",), progress=False))
    assert {json.loads(line)["kind"] for line in path.read_text().splitlines()} == {"mcq"}
    with pytest.raises(CtscribeError):
        GenerateConfig(kinds=("summary",))
    with pytest.raises(CtscribeError):
        GenerateConfig(batch_size=0)
