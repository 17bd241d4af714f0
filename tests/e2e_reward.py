"""A learnable reward for the tiny random model: the share of digits in the response text."""


def digit_share(sample) -> float:
    text = sample.response
    return sum(c.isdigit() for c in text) / max(1, len(text))
