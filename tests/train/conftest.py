"""A tiny CT-RATE-like training set (4 fake volumes, reports, labels, questions) shared by the stage tests."""

from __future__ import annotations

import pytest
import torch

from dataset.ctrate import import_ctrate
from dataset.manifest import Question, write_manifest
from tests.train.fake_ctrate import build_tree


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_ctrate")
    names = {f"train_{i}_a_1.nii.gz": ("raw" if i % 2 else "hu") for i in range(1, 5)}
    names = {(n.replace(".nii.gz", "_fixed.nii.gz") if k == "hu" else n): k for n, k in names.items()}
    tree = build_tree(root, names)
    samples = import_ctrate(root, tree["reports"], labels_csv=tree["labels"], metadata_csv=tree["metadata"]).samples
    from dataclasses import replace

    samples = [
        replace(
            s,
            questions=(
                Question("Is there a pleural effusion?", "yes" if i % 2 else "no", "mcq", ("yes", "no")),
                Question("Describe the lungs.", f"The lungs are clear {i}.", "free"),
            ),
        )
        for i, s in enumerate(samples)
    ]
    return write_manifest(root / "manifest.jsonl", samples)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # These models are tiny: with several threads on a shared 2-core runner, thread
    # oversubscription makes a step ~50x slower than on one thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
