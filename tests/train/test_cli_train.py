import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.main import main
from train.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_python_dash_m_runs_the_cli():
    # `accelerate launch -m app.cli.main train ...` runs the module the same way.
    out = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "train", "finetune", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "--resume" in out.stdout and "--set" in out.stdout


def test_config_yaml_and_overrides(tmp_path):
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("stage: dino\nlr: 0.01\ndino: {n_local_crops: 3}\n")
    cfg = load_config(yaml_path, ["lr=2e-3", "dino.global_crop_scale=[0.5, 1.0]", "bf16=false"])
    assert cfg.lr == 2e-3 and cfg.dino.n_local_crops == 3 and cfg.dino.global_crop_scale == (0.5, 1.0)
    assert cfg.bf16 is False and cfg.steps == 1000
    demo = load_config(REPO / "train" / "configs" / "demo.yaml")
    assert demo.preset == "demo" and demo.stage == "finetune"
    vision = load_config(REPO / "train" / "configs" / "demo-vision.yaml", ["warmup.label_names=[Lung nodule]"])
    assert vision.warmup.objective == "labels" and vision.warmup.label_names == ("Lung nodule",)
    from imaging.phantom import FINDING_LABELS

    listed = load_config(REPO / "train" / "configs" / "demo-vision.yaml").warmup.label_names
    assert set(listed) == set(FINDING_LABELS.values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["lrr=1"], "unknown key"), (["steps=abc"], "steps='abc'"), (["dino.nope=1"], "dino.nope"), (["steps=0"], ">= 1")],
)
def test_bad_config_is_a_clear_cli_error(tmp_path, capsys, overrides, message):
    args = ["train", "dino"] + [x for o in overrides for x in ("--set", o)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid_request:") and message in err


def test_manifest_then_finetune_from_the_cli(tmp_path, capsys):
    from imaging.phantom.config import PhantomConfig
    from imaging.phantom.dataset import write_dataset

    data = tmp_path / "synth"
    write_dataset(data, 2, seed=3, split="train", config=PhantomConfig.with_shape((16, 32, 32)))
    manifest = tmp_path / "m.jsonl"
    assert main(["train", "manifest", "--from", "synth", str(data), "--out", str(manifest), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 2 and summary["hu"] == 2 and summary["questions"] > 0
    sets = {
        "manifest": manifest, "out_dir": tmp_path / "run", "steps": 2, "save_every": 1, "num_workers": 0,
        "progress": "false", "preset": "tiny",
    }
    args = ["train", "finetune", "--config", str(REPO / "train" / "configs" / "tiny.yaml")]
    args += [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 2 and Path(result["final"], "config.json").is_file()
    # Asking again for more steps continues from the checkpoint.
    assert main(args[:-2] + ["--set", "preset=tiny", "--set", "steps=3", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3
