"""The guidance a training item's prompt carries (diagnosis-driven decoding, model/guidance.py).

At inference the decoder is told the heads' findings; in training it is told, per item:
- with probability `head_fraction`: the heads' own predictions for that volume (computed
  once before training from the frozen vision side), so it learns what the heads' mistakes
  look like; the target report stays the true one;
- otherwise the ground truth (labels + the attributes its report gives), each label flipped
  with probability `label_noise` and each attribute replaced by a random class with
  probability `attribute_noise`, so it follows the guidance without trusting it blindly.
The draw is a function of the item's seed: batches are reproducible across resumes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from model.attributes import ATTRIBUTES
from model.guidance import Findings, findings_from_truth, guidance_text


@dataclass(frozen=True)
class GuidanceMix:
    labels: tuple[str, ...]
    """The labels the guidance names (model.guidance.guidance_labels)."""
    head_fraction: float = 0.3
    label_noise: float = 0.05
    attribute_noise: float = 0.05

    def text(
        self, seed: int, labels: dict | None, attributes: dict[str, list[str]], predicted: Findings | None
    ) -> str:
        """The guidance for one item (labels: the sample's 0/1 labels; predicted: the heads' findings)."""
        rng = random.Random(seed * 2654435761 % 2**32)
        if predicted is not None and rng.random() < self.head_fraction:
            return guidance_text(predicted, self.labels)
        seen = findings_from_truth(labels or {}, attributes, self.labels)
        noisy: Findings = {}
        for label in self.labels:
            present = label in seen
            if rng.random() < self.label_noise:
                present = not present
            if not present:
                continue
            details = dict(seen.get(label, {}))
            for name, attr in ATTRIBUTES.items():
                if attr.finding != label:
                    continue
                invented = name not in details and label not in seen  # a label the noise added
                if invented or (name in details and rng.random() < self.attribute_noise):
                    details[name] = [attr.classes[rng.randrange(len(attr.classes))]]
            noisy[label] = details
        return guidance_text(noisy, self.labels)
