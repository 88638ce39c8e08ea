"""The 18-label labeler: hand-written sentences (negation, uncertainty) and the real held-out set."""

import pytest

from ctscribe.labels import CTRATE_LABELS
from model.labeler import LabelerConfig, label_report


def positives(text, **kwargs):
    labels = label_report(text, LabelerConfig(**kwargs))
    assert list(labels) == list(CTRATE_LABELS)
    return {k for k, v in labels.items() if v}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No pleural effusion.", set()),
        ("Pleural effusion-thickening was not detected.", set()),
        ("Pericardial effusion-thickening was not observed.", set()),
        ("No pleural or pericardial effusion was detected.", set()),
        ("No mass or nodule or consolidation was seen in both lungs.", set()),
        ("Atelectasis was not seen.", set()),
        ("Thoracic CT examination within normal limits.", set()),
        ("Heart contour and size are normal.", set()),
        ("Bilateral pleural effusion is observed.", {"Pleural effusion"}),
        ("Cardiomegaly.", {"Cardiomegaly"}),
        ("No pleural effusion, but subsegmental atelectasis is seen in the left lower lobe.", {"Atelectasis"}),
        ("There are consolidation areas in the right lower lobe and no pleural effusion was detected.",
         {"Consolidation"}),
        ("Atelectasis is seen in the left lower lobe and pleural effusion was not detected.", {"Atelectasis"}),
        ("No pathologically sized and configured lymph nodes were detected in the mediastinum.", set()),
        ("A 4 mm nodule is observed in the right upper lobe.", {"Lung nodule"}),
        ("Calcific atheroma plaques in the aorta and coronary arteries.",
         {"Arterial wall calcification", "Coronary artery wall calcification"}),
        ("Sliding type hiatal hernia.", {"Hiatal hernia"}),
        ("Centriacinar emphysematous changes in both lungs.", {"Emphysema"}),
        ("Ground-glass opacities and interlobular septal thickening in both lungs.",
         {"Lung opacity", "Interlobular septal thickening"}),
        ("Cylindrical bronchiectasis and peribronchial thickening in the lower lobes.",
         {"Bronchiectasis", "Peribronchial thickening"}),
        ("Mosaic attenuation pattern in both lungs.", {"Mosaic attenuation pattern"}),
        ("Sequelae fibrotic changes in the right apex.", {"Pulmonary fibrotic sequela"}),
        ("A port catheter extending to the right atrium is observed.", {"Medical material"}),
        ('Findings within normal limits. " Mild pericardial effusion.', {"Pericardial effusion"}),
    ],
)
def test_hand_written_sentences(text, expected):
    assert positives(text) == expected


def test_uncertainty_is_configurable():
    text = "Nodular consolidation in the right lower lobe (pneumonia?)."
    assert "Consolidation" in positives(text)
    uncertain = "Possible consolidation in the right lower lobe."
    assert "Consolidation" in positives(uncertain)
    assert "Consolidation" not in positives(uncertain, uncertain_as_positive=False)
    assert "Lung nodule" not in positives("Lymph node?", uncertain_as_positive=False)


def test_heldout_macro_f1_regression_floor(reports_dir):
    """Held-out (never tuned on) macro F1 measured 0.938; the floor guards against regressions."""
    import pandas as pd

    from eval.clinical import label_prf, labels_matrix
    from model.labeler import label_reports
    from model.labeler.split import N_HELDOUT, split_frame

    frame = pd.read_csv(reports_dir / "ctrate_labeled_reports.csv")
    dev, heldout = split_frame(frame)
    assert len(heldout) == N_HELDOUT and len(dev) == len(frame) - N_HELDOUT
    result = label_prf(heldout[list(CTRATE_LABELS)].to_numpy(),
                       labels_matrix(label_reports(heldout["report_text"].tolist())))
    assert result["macro"]["f1"] >= 0.92
    assert result["micro"]["f1"] >= 0.92
    assert min(v["f1"] for v in result["per_label"].values()) >= 0.78
