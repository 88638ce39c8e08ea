"""Reading a freely generated multiple-choice answer back to an option (model/mcq_parse.py)."""

from __future__ import annotations

import pytest

from model.mcq_parse import parse_choice

CHOICES = ["Normal aeration", "A few millimetric nonspecific nodules", "Enlarged lymph nodes", "Infiltrative lesion"]


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("b. A few millimetric nonspecific nodules.", 1),  # the release's trained target form
        ("b. something else entirely", 1),  # the letter decides
        ("(c) Enlarged lymph nodes", 2),
        ("D: infiltrative lesion", 3),
        ("a", 0),
        ("enlarged lymph nodes", 2),  # no letter: the option text, case and punctuation ignored
        ("The answer is: infiltrative lesion.", 3),  # one option named inside the text
        ("A few millimetric nonspecific nodules", 1),  # starts with "A " but names option b
    ],
)
def test_parses_the_option_named(text, index):
    assert parse_choice(text, CHOICES) == index


@pytest.mark.parametrize(
    "text",
    ["", "   ", "e. out of range", "normal aeration or infiltrative lesion", "no idea", "<im_patch>"],
)
def test_unparsed_answers_are_none(text):
    assert parse_choice(text, CHOICES) is None


def test_an_option_inside_a_longer_one_picks_the_longer():
    choices = ["nodule", "no nodule", "mass", "cyst"]
    assert parse_choice("There is no nodule.", choices) == 1
    assert parse_choice("A nodule.", choices) == 0
