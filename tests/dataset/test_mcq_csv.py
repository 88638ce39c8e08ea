import pytest

from ctscribe.errors import CtscribeError
from dataset.manifest import Sample
from dataset.mcq_csv import attach_questions, read_mcq_csv

HEADER = "Question ID,Image,Question,Choice A,Choice B,Choice C,Choice D,Answer Choice,Answer\n"


def test_letters_pick_the_answer_and_mismatched_text_is_reported(tmp_path):
    csv = tmp_path / "mcq.csv"
    csv.write_text(
        HEADER
        + "1,valid_1_a_1.nii.gz,Is there effusion?,Yes,No,,,B,b. No.\n"
        + "2,/data/valid_1_a_1_fixed.nii.gz,Heart size?,Small,Normal,Large,Absent,c,Normal\n"
    )
    result = read_mcq_csv(csv)
    first, second = result.questions["valid_1_a_1"]
    assert (first.answer, first.choices, first.kind) == ("No", ("Yes", "No"), "mcq")
    assert second.answer == "Large"  # the letter decides
    assert len(result.warnings) == 1 and "'Normal' differs from choice C" in result.warnings[0]

    samples = [Sample(id="valid_1_a_1", volume="/x/valid_1_a_1.nii.gz"), Sample(id="o", volume="/x/o.nii.gz")]
    merged, unmatched = attach_questions(samples, {**result.questions, "valid_9_a_1": [first]})
    assert len(merged[0].questions) == 2 and merged[1].questions == ()
    assert unmatched == ["valid_9_a_1"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,v.nii.gz,Q?,Yes,No,,,C,\n", "Answer Choice"),
        ("1,v.nii.gz,Q?,Yes,,,,A,\n", "at least 2"),
        ("1,,Q?,Yes,No,,,A,\n", "empty 'Image'"),
    ],
)
def test_bad_rows_are_clear_errors(tmp_path, row, message):
    csv = tmp_path / "mcq.csv"
    csv.write_text(HEADER + row)
    with pytest.raises(CtscribeError, match=message):
        read_mcq_csv(csv)


def test_missing_columns(tmp_path):
    csv = tmp_path / "mcq.csv"
    csv.write_text("Question ID,Image,Question\n1,v,Q\n")
    with pytest.raises(CtscribeError, match="lacks column"):
        read_mcq_csv(csv)
