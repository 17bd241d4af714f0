"""rewards.math_words: numbers and arithmetic in words, written out by hand."""

import pytest

from forkrl.rewards.math_words import number_in_words, words_to_symbols


@pytest.mark.parametrize("answer,want", [
    ("twenty", "20"), ("Twenty.", "20"), ("twenty-three", "23"), ("twenty three", "23"), ("zero", "0"),
    ("fourteen", "14"), ("nineteen", "19"), ("ninety-nine", "99"), ("one hundred and five", "105"),
    ("a hundred", "100"), ("minus five", "-5"), ("negative twelve", "-12"), ("twenty (20)", "20"),
    ("twenty (21)", None), ("twentyone", None), ("seventeen apples", None), ("20", None), ("", None),
    ("twenty or thirty", None),
])
def test_number_in_words(answer, want):
    assert number_in_words(answer) == want


@pytest.mark.parametrize("text,want", [
    ("What is zero plus ", "What is 0  +  "), ("seventeen minus three", "17  -  3"), ("3 times 4", "3  *  4"),
    ("12 divided by 4", "12  /  4"), ("12 over 4", "12 /  4"), ("the sum of 0 and ", "the 0 + "),
    ("add 0 to ", "0 + "), ("subtract 3 from ", "3 + "), ("3 less than ", "3 -  "), ("0 more than ", "0 +  "),
    ("less than ", "less than "), ("more than ", "more than "), ("is 20 more than 3", "is 20 +  3"),
    ("0 added to ", "0  +  "), ("no one", "no 1"), ("someone", "someone"),
])
def test_words_to_symbols(text, want):
    assert words_to_symbols(text) == want
