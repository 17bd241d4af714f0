"""orchestrator.batching.pack_batch: scored, advantaged Episodes -> the learner's right-padded,
token-aligned TrainBatch. Expected tensors are written out."""
import pytest
import torch

from forkrl.common.episode import Episode
from forkrl.orchestrator.batching import pack_batch


def ep(prompt, response, logprobs, advantage, finish="stop", version=0, index=0):
    return Episode(prompt_index=index, sample_index=0, prompt_ids=prompt, response_ids=response,
                   logprobs=logprobs, finish_reason=finish, text="", weight_version=version,
                   prompt_id=f"p{index}", advantage=advantage)


def test_layout_is_written_out():
    episodes = [
        ep([1, 2], [3, 4, 5], [-0.1, -0.2, -0.3], 1.5, version=4),
        ep([6, 7, 8], [9], [-0.4], -0.5, version=3),
        ep([1], [2, 3], [-0.5, -0.6], 2.0, finish="length", version=4),
    ]
    b = pack_batch(episodes, pad_id=0, temperature=0.7, mask_truncated=True)
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0], [1, 2, 3, 0, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]
    assert b.input_ids.dtype == torch.long and b.attention_mask.dtype == torch.long
    # loss positions are the response tokens; the truncated row is masked out of the loss
    assert b.loss_mask.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]
    assert b.advantages.tolist() == [[0, 0, 1.5, 1.5, 1.5], [0, 0, 0, -0.5, 0], [0, 0, 0, 0, 0]]
    torch.testing.assert_close(b.rollout_logprobs, torch.tensor(
        [[0, 0, -0.1, -0.2, -0.3], [0, 0, 0, -0.4, 0], [0, 0, 0, 0, 0]]))
    assert b.weight_version.tolist() == [4, 3, 4]
    assert b.temperature == 0.7 and b.old_logprobs is None and b.ref_logprobs is None
    assert (b.num_seqs, b.num_tokens, b.num_loss_tokens, b.num_loss_seqs) == (3, 12, 4, 2)
    # the same truncated row trains when masking is off
    assert pack_batch(episodes, pad_id=0, temperature=0.7).loss_mask[2].tolist() == [0, 1, 1, 0, 0]


def test_versions_survive_sharding():
    episodes = [ep([1], [2, 3], [-1.0, -1.0], 1.0, version=v, index=i) for i, v in enumerate([7, 5, 6, 7])]
    b = pack_batch(episodes, pad_id=0, temperature=1.0)
    shards = b.shard(2)
    assert sorted(v for s in shards for v in s.weight_version.tolist()) == [5, 6, 7, 7]


def test_empty_response_and_longest_row_sets_the_width():
    b = pack_batch([ep([5, 6, 7, 8], [], [], 1.0), ep([1], [2], [-1.0], 1.0)], pad_id=9, temperature=1.0)
    assert b.input_ids.tolist() == [[5, 6, 7, 8], [1, 2, 9, 9]]
    assert b.loss_mask.tolist() == [[0, 0, 0, 0], [0, 1, 0, 0]]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="at least one episode"):
        pack_batch([], pad_id=0, temperature=1.0)
    with pytest.raises(ValueError, match=r"episode 1 \(p1/0\): 1 log-probs for 2 response tokens"):
        pack_batch([ep([1], [2], [-1.0], 0.0), ep([1], [2, 3], [-1.0], 0.0, index=1)], pad_id=0,
                   temperature=1.0)
    with pytest.raises(ValueError, match=r"episode 0 \(p0/0\) has no advantage"):
        pack_batch([ep([1], [2], [-1.0], None)], pad_id=0, temperature=1.0)
