"""A checkpoint says what it was trained on; a phantom-only model says so on a real CT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import model
from imaging.volume import PHANTOM_SOURCE_HINT
from model.checkpoint import read_config
from model.errors import ModelError
from model.provenance import NOT_TRAINED_ON_REAL_CT, SYNTHETIC_PHANTOM, UNKNOWN, attach, input_warnings
from model.results import AnswerOutput

DEMO = Path(__file__).resolve().parents[2] / "model" / "weights" / "demo"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny checkpoint that says it was trained on phantoms."""
    directory = tmp_path_factory.mktemp("ckpt") / "phantom-trained"
    model.build("tiny", seed=0).save(directory, trained_on=SYNTHETIC_PHANTOM)
    return directory


def test_a_built_model_does_not_know_what_it_was_trained_on(tiny_pipe):
    assert tiny_pipe.trained_on == UNKNOWN


def test_trained_on_round_trips_through_save_and_load(saved, tmp_path):
    assert json.loads((saved / "config.json").read_text())["checkpoint"]["trained_on"] == SYNTHETIC_PHANTOM
    loaded = model.load(saved)
    assert loaded.trained_on == SYNTHETIC_PHANTOM
    loaded.save(tmp_path / "again")  # kept by default: a fine-tuned phantom model is still one
    assert model.load(tmp_path / "again").trained_on == SYNTHETIC_PHANTOM
    loaded.save(tmp_path / "relabelled", trained_on="ct-rate")
    assert model.load(tmp_path / "relabelled").trained_on == "ct-rate"


def test_a_checkpoint_written_before_trained_on_existed_loads_as_unknown(saved, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(saved, old)
    doc = json.loads((old / "config.json").read_text())
    del doc["checkpoint"]["trained_on"]
    (old / "config.json").write_text(json.dumps(doc))
    assert read_config(old)[1]["trained_on"] == UNKNOWN
    assert model.load(old).trained_on == UNKNOWN


def test_trained_on_must_be_a_word(tiny_pipe, tmp_path):
    with pytest.raises(ModelError):
        tiny_pipe.save(tmp_path / "bad", trained_on="  ")


def test_the_bundled_demo_checkpoint_says_it_was_trained_on_phantoms():
    if not (DEMO / "config.json").is_file():
        pytest.skip("no bundled demo checkpoint")
    assert read_config(DEMO)[1]["trained_on"] == SYNTHETIC_PHANTOM


@pytest.mark.parametrize("trained_on, source_hint, warned", [
    (SYNTHETIC_PHANTOM, "", True),
    (SYNTHETIC_PHANTOM, PHANTOM_SOURCE_HINT, False),
    ("ct-rate", "", False),
    (UNKNOWN, "", False),
])
def test_only_a_phantom_model_on_a_non_phantom_is_warned(trained_on, source_hint, warned):
    assert input_warnings(trained_on, source_hint) == ([NOT_TRAINED_ON_REAL_CT] if warned else [])


def test_attach_puts_the_input_warning_first_on_every_result():
    outs = [AnswerOutput(text="x", n_tokens=1, warnings=[{"code": "other", "message": "m"}]),
            AnswerOutput(text="y", n_tokens=1)]
    attach(outs, input_warnings(SYNTHETIC_PHANTOM, ""))
    assert [[w["code"] for w in o.warnings] for o in outs] == [
        ["model_not_trained_on_real_ct", "other"], ["model_not_trained_on_real_ct"]]
    assert outs[0].warnings[0] is not outs[1].warnings[0]
