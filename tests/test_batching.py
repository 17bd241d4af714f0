"""orchestrator.batching.pack_batch: scored generations -> the learner's right-padded, token-aligned
TrainBatch. Expected tensors are written out."""
import pytest
import torch

from orchestrator.batching import TrainItem, pack_batch


def test_layout_is_written_out():
    items = [
        TrainItem(prompt_ids=[1, 2], response_ids=[3, 4, 5], logprobs=[-0.1, -0.2, -0.3], advantage=1.5),
        TrainItem(prompt_ids=[6, 7, 8], response_ids=[9], logprobs=[-0.4], advantage=-0.5),
        TrainItem(prompt_ids=[1], response_ids=[2, 3], logprobs=[-0.5, -0.6], advantage=2.0, train=False),
    ]
    b = pack_batch(items, pad_id=0, temperature=0.7)
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0], [1, 2, 3, 0, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]
    assert b.input_ids.dtype == torch.long and b.attention_mask.dtype == torch.long
    # loss positions are the response tokens; the untrained row has none
    assert b.loss_mask.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]
    assert b.advantages.tolist() == [[0, 0, 1.5, 1.5, 1.5], [0, 0, 0, -0.5, 0], [0, 0, 0, 0, 0]]
    torch.testing.assert_close(b.rollout_logprobs, torch.tensor(
        [[0, 0, -0.1, -0.2, -0.3], [0, 0, 0, -0.4, 0], [0, 0, 0, 0, 0]]))
    assert b.temperature == 0.7 and b.old_logprobs is None and b.ref_logprobs is None
    assert (b.num_seqs, b.num_tokens, b.num_loss_tokens, b.num_loss_seqs) == (3, 12, 4, 2)


def test_empty_response_and_longest_row_sets_the_width():
    b = pack_batch([TrainItem([5, 6, 7, 8], [], [], 1.0), TrainItem([1], [2], [-1.0], 1.0)], pad_id=9,
                   temperature=1.0)
    assert b.input_ids.tolist() == [[5, 6, 7, 8], [1, 2, 9, 9]]
    assert b.loss_mask.tolist() == [[0, 0, 0, 0], [0, 1, 0, 0]]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="at least one item"):
        pack_batch([], pad_id=0, temperature=1.0)
    with pytest.raises(ValueError, match="item 1: 1 log-probs for 2 response tokens"):
        pack_batch([TrainItem([1], [2], [-1.0], 0.0), TrainItem([1], [2, 3], [-1.0], 0.0)], pad_id=0,
                   temperature=1.0)
