import pytest

from ctscribe.labels import CTRATE_LABELS
from dataset.manifest import read_manifest, write_manifest
from dataset.phantom_import import import_phantom


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    from imaging.phantom.config import PhantomConfig
    from imaging.phantom.dataset import write_dataset

    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, 2, seed=1, split="train", config=PhantomConfig.with_shape((16, 32, 32)))
    return out


def test_synth_dataset_becomes_a_manifest(synth_set):
    result = import_phantom(synth_set)
    assert result.warnings == [] and len(result.samples) == 2
    for sample in result.samples:
        assert sample.split == "train" and sample.hu_source == "hu"
        assert sample.hu_check["decided_by"] == "name+values"  # declared HU and the values agree
        assert (sample.rescale_slope, sample.rescale_intercept) == (1.0, 0.0)
        assert sample.findings and sample.impression
        assert list(sample.labels) == list(CTRATE_LABELS)
        assert sample.questions and {q.kind for q in sample.questions} <= {"mcq", "free"}
        assert all(q.answer in q.choices for q in sample.questions if q.kind == "mcq")
        assert sample.spacing_mm_zyx is not None
    path = write_manifest(synth_set / "manifest.jsonl", result.samples)
    assert [s.id for s in read_manifest(path, check_files=True)] == [s.id for s in result.samples]


def test_not_a_synth_folder(tmp_path):
    from ctscribe.errors import CtscribeError

    with pytest.raises(CtscribeError, match="not a synth dataset"):
        import_phantom(tmp_path)
