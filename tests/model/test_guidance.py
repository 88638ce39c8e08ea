"""Diagnosis-driven decoding: attribute heads, the guidance text, and prompts that carry it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import model
from ctscribe.errors import CtscribeError
from model.attributes import (
    ATTRIBUTES,
    AttributeHead,
    attribute_loss,
    attribute_targets,
    class_offsets,
    decode_attributes,
)
from model.config import PHANTOM_LABELS, ModelConfig
from model.guidance import (
    check_findings,
    findings_from_heads,
    findings_from_truth,
    guidance_labels,
    guidance_text,
)
from model.prompts import report_prompt

NAMES = tuple(ATTRIBUTES)


def test_phantom_labels_are_the_labels_the_phantom_renders():
    from imaging.phantom.config import FINDING_LABELS

    assert set(PHANTOM_LABELS) == set(FINDING_LABELS.values())


def test_attribute_targets_masks_unknowns_and_keeps_multi_label_stations():
    targets, mask = attribute_targets(
        {"nodule_lobe": ["left lower"], "lymph_station": ["subcarinal", "prevascular"], "device": ["not a device"]}, NAMES
    )
    offsets = dict(zip(NAMES, class_offsets(NAMES)))
    lo, hi = offsets["nodule_lobe"]
    assert targets[lo:hi].tolist() == [0, 0, 0, 0, 1]
    lo, hi = offsets["lymph_station"]
    assert targets[lo:hi].tolist() == [0, 1, 1, 0]
    assert mask.tolist() == [name in ("nodule_lobe", "lymph_station") for name in NAMES]  # unknown class: masked


def test_attribute_loss_ignores_masked_attributes_and_falls_when_trained():
    torch.manual_seed(0)
    head = AttributeHead(NAMES, 16, 8)
    slices, z3d = torch.randn(4, 6, 16), torch.randn(4, 8)
    slice_mask = torch.ones(4, 6, dtype=torch.bool)
    slice_mask[0, 4:] = False
    targets, mask = zip(*[attribute_targets({"nodule_lobe": [lobe], "effusion_side": ["left"]}, NAMES)
                          for lobe in ("right upper", "left upper", "left lower", "right middle")])
    targets, mask = torch.stack(targets), torch.stack(mask)
    logits = head(slices, z3d, slice_mask)
    assert logits.shape == (4, class_offsets(NAMES)[-1][1])
    # changing the logits of an attribute no row knows does not change the loss
    lo, hi = class_offsets(NAMES)[NAMES.index("device")]
    bumped = logits.clone()
    bumped[:, lo:hi] += 5.0
    assert torch.allclose(attribute_loss(logits, targets, mask, NAMES), attribute_loss(bumped, targets, mask, NAMES))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(50):
        loss = attribute_loss(head(slices, z3d, slice_mask), targets, mask, NAMES)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 4
    probs = decode_attributes(head(slices, z3d, slice_mask)[1].detach(), NAMES)
    assert max(probs["nodule_lobe"], key=probs["nodule_lobe"].get) == "left upper"


def test_padded_slices_do_not_change_the_attribute_logits():
    torch.manual_seed(0)
    head = AttributeHead(NAMES, 16, 8).eval()
    slices, z3d = torch.randn(1, 6, 16), torch.randn(1, 8)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    other = slices.clone()
    other[0, 4:] = 100.0
    assert torch.allclose(head(slices, z3d, mask), head(other, z3d, mask))


def test_guidance_text_names_seen_findings_with_attributes_and_the_rest_as_not_seen():
    seen = {"Lung nodule": {"nodule_lobe": ["right upper"], "nodule_size": ["6 to 10 mm"]},
            "Pleural effusion": {"effusion_side": ["left"]},
            "Lymphadenopathy": {"lymph_station": ["subcarinal", "prevascular"]}}
    text = guidance_text(seen, PHANTOM_LABELS)
    assert text.splitlines()[0] == (
        "Seen: lymphadenopathy (subcarinal and prevascular); lung nodule (right upper lobe, 6 to 10 mm); "
        "pleural effusion (left)."
    )
    assert text.splitlines()[1].startswith("Not seen: medical material, arterial wall calcification, cardiomegaly")
    assert "lung nodule" not in text.splitlines()[1]
    assert guidance_text({}, ("Cardiomegaly",)) == "Seen: none.\nNot seen: cardiomegaly."


def test_findings_from_heads_thresholds_labels_and_picks_attributes():
    probs = {label: 0.1 for label in PHANTOM_LABELS}
    probs.update({"Lung nodule": 0.7, "Lymphadenopathy": 0.5})
    attrs = {
        "nodule_lobe": {"right upper": 0.1, "right middle": 0.1, "right lower": 0.6, "left upper": 0.1, "left lower": 0.1},
        "lymph_station": {"right paratracheal": 0.2, "subcarinal": 0.3, "prevascular": 0.1, "right hilar": 0.4},
        "effusion_side": {"right": 0.9, "left": 0.05, "bilateral": 0.05},
    }
    seen = findings_from_heads(probs, attrs, PHANTOM_LABELS, threshold=0.5)
    assert seen == {"Lymphadenopathy": {"lymph_station": ["right hilar"]}, "Lung nodule": {"nodule_lobe": ["right lower"]}}


def test_findings_from_truth_keeps_only_positive_labels():
    seen = findings_from_truth({"Lung nodule": 1, "Cardiomegaly": 0}, {"nodule_lobe": ["left upper"], "effusion_side": ["left"]},
                               PHANTOM_LABELS)
    assert seen == {"Lung nodule": {"nodule_lobe": ["left upper"]}}


def test_user_findings_are_checked():
    cfg = ModelConfig.from_preset("demo")
    assert check_findings(["cardiomegaly"], cfg) == {"Cardiomegaly": {}}
    assert check_findings({"Pleural effusion": {"effusion_side": "left"}}, cfg) == {"Pleural effusion": {"effusion_side": ["left"]}}
    for bad in ({"Bronchiectasis": {}}, {"Lung nodule": {"effusion_side": ["left"]}}, {"Lung nodule": {"nodule_lobe": ["top"]}}, "x"):
        with pytest.raises(CtscribeError):
            check_findings(bad, cfg)


def test_presets_guidance():
    assert ModelConfig.from_preset("samf-compat").prompt.guidance == "off"
    for name in ("demo", "ctscribe"):
        cfg = ModelConfig.from_preset(name)
        assert cfg.prompt.guidance == "findings" and cfg.labels.attributes == NAMES
    assert guidance_labels(ModelConfig.from_preset("demo")) == PHANTOM_LABELS
    assert len(guidance_labels(ModelConfig.from_preset("ctscribe"))) == 18


def test_prompt_without_guidance_is_unchanged():
    cfg = ModelConfig.from_preset("samf-compat").prompt
    assert report_prompt(cfg, 3) == report_prompt(cfg, 3, "") == "<im_patch>" * 3 + cfg.report_instruction


@pytest.fixture(scope="module")
def guided_pipe():
    tiny = ModelConfig.from_preset("tiny")
    cfg = tiny.replace(
        prompt=replace(tiny.prompt, guidance="findings", guidance_labels=PHANTOM_LABELS),
        labels=replace(tiny.labels, attributes=NAMES),
    )
    return model.build(cfg, seed=0)


def test_pipeline_reports_carry_the_heads_guidance_and_attributes(guided_pipe, tiny_cts):
    from model.generation import GenerationParams

    out = guided_pipe.report(tiny_cts, GenerationParams(max_new_tokens=4))
    for o in out:
        seen = [label for label in PHANTOM_LABELS if o.labels[label] >= 0.5]
        assert o.guidance.startswith("Seen: ")
        for label in seen:
            assert label.lower() in o.guidance.splitlines()[0]
        assert set(o.attributes) == set(NAMES)
        assert abs(sum(o.attributes["nodule_lobe"].values()) - 1.0) < 1e-4


def test_forced_findings_change_what_the_decoder_reads(guided_pipe, tiny_cts):
    from model.generation import GenerationParams

    params = GenerationParams(max_new_tokens=3)
    forced = guided_pipe.report(tiny_cts[:1], params, findings=[{"Cardiomegaly": {}}])[0]
    assert forced.guidance.startswith("Seen: cardiomegaly.")
    none = guided_pipe.report(tiny_cts[:1], params, findings=[[]])[0]
    assert none.guidance.startswith("Seen: none.")
    a = guided_pipe.choose(tiny_cts[:1], ["Is the heart enlarged?"], [["Yes", "No"]], findings=[["Cardiomegaly"]])[0]
    b = guided_pipe.choose(tiny_cts[:1], ["Is the heart enlarged?"], [["Yes", "No"]], findings=[[]])[0]
    assert a.probabilities != b.probabilities  # the guidance is in the scored prompt
    with pytest.raises(CtscribeError):
        guided_pipe.report(tiny_cts[:1], params, findings=[["Not a finding"]])


def test_a_model_without_guidance_refuses_findings(tiny_pipe, tiny_cts):
    from model.generation import GenerationParams

    with pytest.raises(CtscribeError):
        tiny_pipe.report(tiny_cts[:1], GenerationParams(max_new_tokens=2), findings=[["Cardiomegaly"]])
    assert tiny_pipe.report(tiny_cts[:1], GenerationParams(max_new_tokens=2))[0].guidance == ""


def test_guided_checkpoint_round_trips(guided_pipe, tiny_cts, tmp_path):
    guided_pipe.save(tmp_path / "ckpt")
    again = model.load(tmp_path / "ckpt")
    assert again.config == guided_pipe.config
    assert torch.equal(again.model.attribute_head.queries, guided_pipe.model.attribute_head.queries)
