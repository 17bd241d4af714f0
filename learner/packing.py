"""Packed, prefix-shared forward: a micro-batch's sequences as one row, each distinct prompt once.

Why: in a GRPO batch every prompt is repeated G times (8 in the default job) and right-padded to the
longest sequence of its micro-batch. Measured on the default job, a sequence is ~50 prompt tokens
and ~43 response tokens, padded to ~146 positions: most of the learner's matmuls ran on padding and
on the same prompt again. Here a micro-batch is computed as:

  prefix row    every distinct prefix once (the tokens before a row's first loss position), each
                segment causal within itself (block-diagonal mask), positions from 0
  response rows every sequence's remaining tokens up to its last loss position, packed whole into
                bins of ~BIN_TOKENS (first-fit, longest first); a token attends to its own prefix's
                keys/values (computed once, in the prefix row's KV cache, which every bin reads) and
                causally to its own segment; positions continue from its prefix

The prefix row runs first with use_cache=True; the response bins read that cache. Gradients flow
through the cached keys/values into the prefix computation, once per prompt with the G samples'
contributions summed by autograd: the same gradient as G separate rows, in fewer FLOPs. What is
shared is decided by content (equal prefix token ids), so nothing upstream needs to mark groups.

Why bins and not one response row: attention inside a packed row is dense over the row, masked
after the fact, so one row of all ~1000 response tokens of a micro-batch spent more time in masked
attention than packing saved (measured: half the positions of the padded path, only 1.6x faster).
Bins bound each token's attention span to its prefix row plus one bin.

The masks are explicit 4D masks, which transformers passes to the attention as given; only the
"sdpa" (boolean mask) and "eager" (additive mask) implementations take them, and only for plain
causal full attention with rotary positions read from position_ids are they right. So
`packing_supported` admits only checked model families (PACKED_MODEL_TYPES) without windows,
non-attention layers or length-dependent RoPE, the worker compares packed and padded log-probs
once at start-up, and otherwise it falls back to the padded path.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


# Capacity of a response bin, in tokens (a longer segment gets a bin of its own). Each response token
# attends over the prefix row plus its bin: small bins waste less masked attention, large ones less
# padding; 256 keeps the masked attention to ~10% of a 135M model's per-token matmuls.
BIN_TOKENS = 256


@dataclass(frozen=True)
class PackPlan:
    """Where every packed token comes from. P = prefix-row length, R = response tokens (all bins).
    Response tokens are listed bin by bin, in slot order within a bin."""

    prefix_ids: torch.Tensor  # long [P]
    prefix_pos: torch.Tensor  # long [P]: position within its own sequence
    prefix_seg: torch.Tensor  # long [P]: which distinct prefix (0..U-1)
    resp_ids: torch.Tensor  # long [R]
    resp_pos: torch.Tensor  # long [R]
    resp_row: torch.Tensor  # long [R]: the batch row b the token comes from
    resp_col: torch.Tensor  # long [R]: its column t in input_ids (its logits predict input_ids[b, t+1])
    resp_prefix: torch.Tensor  # long [R]: the distinct prefix its row reads (-1: none, prefix empty)
    selected: torch.Tensor  # bool [R]: where[b, t], i.e. the head runs here
    resp_bin: torch.Tensor  # long [R]: the response row (bin) it sits in
    resp_slot: torch.Tensor  # long [R]: its column in that bin

    @property
    def bins(self) -> tuple[int, int]:
        """(number of response rows, their padded width)."""
        if self.resp_bin.numel() == 0:
            return 0, 0
        return int(self.resp_bin.max()) + 1, int(self.resp_slot.max()) + 1

    @property
    def num_positions(self) -> int:
        """Positions the model computes (bins padded to their width), against B x L padded."""
        n, width = self.bins
        return int(self.prefix_ids.numel()) + n * width


def plan_packing(input_ids: torch.Tensor, attention_mask: torch.Tensor, where: torch.Tensor,
                 bin_tokens: int = BIN_TOKENS) -> PackPlan:
    """The packing of right-padded rows [B, L] whose wanted logits are `where` [B, L-1].

    Row b's prefix is input_ids[b, :f] with f its first wanted position (the logits at f predict the
    first wanted token, so position f itself goes to the response row); its response segment is
    positions f .. l, l its last wanted position. Rows with no wanted position are left out.
    Positions the wanted logits do not depend on (after l, padding) are never computed. Segments
    go whole into bins of `bin_tokens` (see BIN_TOKENS).
    """
    # Planning is index bookkeeping: on the CPU (one transfer, not a device sync per row).
    input_ids, attention_mask, where = input_ids.cpu(), attention_mask.cpu(), where.cpu()
    batch, length = input_ids.shape
    if tuple(where.shape) != (batch, length - 1):
        raise ValueError(f"where has shape {tuple(where.shape)}, expected {(batch, length - 1)}")
    real = attention_mask.bool()
    prefixes: dict[tuple[int, ...], int] = {}
    pre_ids, pre_pos, pre_seg = [], [], []
    segments: list[tuple[int, int, int, int]] = []  # (row, first, last, prefix)
    for b in range(batch):
        cols = torch.nonzero(where[b]).flatten()
        if cols.numel() == 0:
            continue
        first, last = int(cols[0]), int(cols[-1])
        if not bool(real[b, :last + 2].all()):
            raise ValueError(f"row {b}: a wanted position reads padding (attention_mask must be 1 on "
                             f"positions 0..{last + 1})")
        key = tuple(input_ids[b, :first].tolist())
        if not key:
            u = -1
        elif key in prefixes:
            u = prefixes[key]
        else:
            u = prefixes[key] = len(prefixes)
            pre_ids.append(input_ids[b, :first])
            pre_pos.append(torch.arange(first))
            pre_seg.append(torch.full((first,), u, dtype=torch.long))
        segments.append((b, first, last, u))
    if not pre_ids and segments:
        # A placeholder prefix that no response token reads (its segment 0 is nobody's resp_prefix):
        # every micro-batch on every rank then runs the same two forwards. ZeRO-2 fills its reduce
        # buckets in the order parameter gradients become ready, which follows the graph's shape,
        # and reduces the buckets across ranks position by position: a rank without a prefix
        # forward would add its gradients into other parameters' slots (measured: the two-rank
        # step diverged from the one-rank step when one rank's micro-batch had no prefix).
        pre_ids.append(input_ids[segments[0][0], segments[0][1]:segments[0][1] + 1])
        pre_pos.append(torch.zeros(1, dtype=torch.long))
        pre_seg.append(torch.zeros(1, dtype=torch.long))

    # First-fit bins, longest segment first (ties by row): whole segments, capacity bin_tokens.
    bins: list[list[tuple[int, int, int, int]]] = []
    room: list[int] = []
    for seg in sorted(segments, key=lambda sg: (-(sg[2] - sg[1] + 1), sg[0])):
        size = seg[2] - seg[1] + 1
        k = next((i for i, r in enumerate(room) if r >= size), None)
        if k is None:
            bins.append([])
            room.append(max(bin_tokens, size))
            k = len(bins) - 1
        bins[k].append(seg)
        room[k] -= size
    r_ids, r_pos, r_row, r_col, r_pre, r_sel, r_bin, r_slot = ([] for _ in range(8))
    for k, members in enumerate(bins):
        slot = 0
        for b, first, last, u in sorted(members, key=lambda sg: sg[0]):  # row order inside a bin
            span = torch.arange(first, last + 1)
            r_ids.append(input_ids[b, first:last + 1])
            r_pos.append(span)
            r_row.append(torch.full_like(span, b))
            r_col.append(span)
            r_pre.append(torch.full_like(span, u))
            r_sel.append(where[b, first:last + 1].bool())
            r_bin.append(torch.full_like(span, k))
            r_slot.append(torch.arange(slot, slot + span.numel()))
            slot += span.numel()

    def cat(parts: list[torch.Tensor], dtype=torch.long) -> torch.Tensor:
        return torch.cat(parts).to(dtype) if parts else torch.zeros(0, dtype=dtype)

    return PackPlan(prefix_ids=cat(pre_ids), prefix_pos=cat(pre_pos), prefix_seg=cat(pre_seg),
                    resp_ids=cat(r_ids), resp_pos=cat(r_pos), resp_row=cat(r_row), resp_col=cat(r_col),
                    resp_prefix=cat(r_pre), selected=cat(r_sel, torch.bool), resp_bin=cat(r_bin),
                    resp_slot=cat(r_slot))


def _segments(keys: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of the runs of equal consecutive values in `keys` [N]."""
    if keys.numel() == 0:
        return []
    starts = [0] + (torch.nonzero(keys[1:] != keys[:-1]).flatten() + 1).tolist()
    return list(zip(starts, starts[1:] + [keys.numel()]))


def prefix_mask(plan: PackPlan) -> torch.Tensor:
    """bool [P, P]: query q sees key k iff same prefix segment and k <= q."""
    p = plan.prefix_seg.numel()
    mask = torch.zeros(p, p, dtype=torch.bool)
    for a, b in _segments(plan.prefix_seg):  # each prefix is one contiguous run
        mask[a:b, a:b] = torch.ones(b - a, b - a, dtype=torch.bool).tril()
    return mask


def response_mask(plan: PackPlan) -> torch.Tensor:
    """bool [n, W, P + W] for n bins of width W: a response token sees its own prefix's keys and its
    own segment causally. A padding slot sees only itself (a query with no key would be NaN).
    Filled block by block: memory and time stay linear in the tokens, not quadratic."""
    n, width = plan.bins
    num_prefix = plan.prefix_ids.numel()
    mask = torch.zeros(n, width, num_prefix + width, dtype=torch.bool)
    mask[:, :, num_prefix:] = torch.eye(width, dtype=torch.bool)  # padding slots: themselves
    spans = {int(plan.prefix_seg[a]): (a, b) for a, b in _segments(plan.prefix_seg)}
    # A response segment = the run of one row's tokens inside its bin (contiguous by construction).
    rows = int(plan.resp_row.max()) + 1 if plan.resp_row.numel() else 1
    for a, b in _segments(plan.resp_bin * rows + plan.resp_row):
        k, s0 = int(plan.resp_bin[a]), int(plan.resp_slot[a])
        s1 = s0 + (b - a)
        mask[k, s0:s1, num_prefix + s0:num_prefix + s1] = torch.ones(b - a, b - a, dtype=torch.bool).tril()
        u = int(plan.resp_prefix[a])
        if u >= 0:
            p0, p1 = spans[u]
            mask[k, s0:s1, p0:p1] = True
    return mask


# Decoder families whose attention is plain causal self-attention with rotary positions taken from
# position_ids, checked against the padded path: only these are packed. Others (hybrid and recurrent
# layers, ALiBi, local or chunked attention, row-index position tricks) ignore or mis-read a packed
# row's 4D mask; measured: GPT-Neo's local attention gave log-probs off by 0.06, Qwen3.5's linear
# attention crashed on the shared cache, Bloom's ALiBi on the 4D mask.
PACKED_MODEL_TYPES = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
                                "gemma", "granite", "olmo2", "phi3"})


def packing_supported(config) -> str:
    """'' when `packed_logprobs_and_entropy` computes this model exactly, else why not (a transformers config).
    The worker also compares packed and padded log-probs once at start-up (`self_check`)."""
    text = config.get_text_config(decoder=True)
    if text.model_type not in PACKED_MODEL_TYPES:
        return (f"model_type {text.model_type!r} is not among the families checked for packing "
                f"({', '.join(sorted(PACKED_MODEL_TYPES))})")
    impl = text._attn_implementation
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} does not take a custom 4D mask (sdpa and eager do)"
    cfg = text.to_dict()
    for key in ("sliding_window", "attention_chunk_size"):
        if cfg.get(key) is not None:
            return f"{key}={cfg[key]}: a custom 4D mask would bypass the window"
    kinds = set(cfg.get("layer_types") or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"layer_types {sorted(kinds)}: only full-attention layers read a packed row's 4D mask"
    rope = [cfg.get("rope_scaling") or {}, cfg.get("rope_parameters") or {}]
    rope += [v for r in rope for v in r.values() if isinstance(v, dict)]  # per layer type
    for kind in {r.get("rope_type") or r.get("type") for r in rope} & {"dynamic", "longrope"}:
        return (f"rope_type {kind!r} rescales by the length of each forward: the prefix row and the "
                "response bins would get other frequencies than the whole sequence")
    return ""


def _as_attention_mask(allowed: torch.Tensor, impl: str, dtype: torch.dtype, device) -> torch.Tensor:
    """[N, Q, K] bool -> the [N, 1, Q, K] mask `impl` takes: boolean for sdpa, additive for eager."""
    allowed = allowed.to(device)[:, None]
    if impl == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
        ~allowed, torch.finfo(dtype).min)


def packed_hidden_forward(forward, model: torch.nn.Module, plan: PackPlan, dtype: torch.dtype,
                          device) -> torch.Tensor:
    """The head's output (logits) at the plan's selected response tokens, [N, V] in response order.

    `forward` is the DeepSpeed engine or the plain HF `model` itself. The response bins go through
    `forward`, the prefix row through `model`: DeepSpeed's forward arms per-backward bookkeeping on
    its outputs (ZeRO's backward prologue), which must run once per backward on every rank, and the
    prefix is in the response's graph through the cache anyway (a rank whose micro-batch shares no
    prefix calls `forward` once too; with two calls the ranks' ZeRO-2 reductions were measured to
    diverge). The output embedding is narrowed by a forward pre-hook to the selected tokens (the
    prefix row computes no logits at all).
    """
    config, head = model.config, model.get_output_embeddings()
    impl = config._attn_implementation
    n_bins, width = plan.bins
    ids = torch.zeros(n_bins, width, dtype=torch.long)
    pos = torch.zeros(n_bins, width, dtype=torch.long)
    sel = torch.zeros(n_bins, width, dtype=torch.bool)
    ids[plan.resp_bin, plan.resp_slot] = plan.resp_ids
    pos[plan.resp_bin, plan.resp_slot] = plan.resp_pos
    sel[plan.resp_bin, plan.resp_slot] = plan.selected  # row-major order = the plan's token order
    keep = [torch.zeros(1, plan.prefix_ids.numel(), dtype=torch.bool), sel]
    calls: list[tuple[int, ...]] = []

    def narrow(module, args):
        calls.append(tuple(args[0].shape))
        if len(calls) > len(keep) or tuple(args[0].shape[:2]) != tuple(keep[len(calls) - 1].shape):
            raise RuntimeError(f"the model calls its output embedding on hidden states of shapes {calls}: "
                               "the packed forward needs one call on [rows, T, H] per forward")
        return (args[0][keep[len(calls) - 1].to(args[0].device)],) + tuple(args[1:])

    handle = head.register_forward_pre_hook(narrow)
    try:
        cache = model(input_ids=plan.prefix_ids[None].to(device), position_ids=plan.prefix_pos[None].to(device),
                      attention_mask=_as_attention_mask(prefix_mask(plan)[None], impl, dtype, device),
                      use_cache=True).past_key_values
        cache.batch_repeat_interleave(n_bins)  # every bin reads the prefix row's keys and values
        logits = forward(input_ids=ids.to(device), position_ids=pos.to(device),
                         attention_mask=_as_attention_mask(response_mask(plan), impl, dtype, device),
                         past_key_values=cache, use_cache=True).logits
    finally:
        handle.remove()
    n = int(plan.selected.sum())
    if logits.shape[:-1] != (n,):
        raise RuntimeError(f"the model returned logits of shape {tuple(logits.shape)} for {n} selected "
                           "rows: it does not return its head's output as its logits")
    return logits


def packed_logprobs_and_entropy(forward, model: torch.nn.Module, input_ids: torch.Tensor,
                                attention_mask: torch.Tensor, where: torch.Tensor, temperature: float,
                                chunk_size: int, dtype: torch.dtype, device, entropy_grad: bool = False,
                                bin_tokens: int = BIN_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob, entropy) of input_ids[:, 1:] given the prefix, [B, L-1], where `where` is True and 0
    elsewhere: the contract of learner.logprobs.selected_logprobs_and_entropy, computed packed.

    When nothing is wanted, row 0's first position is computed anyway and zeroed: the head must be in
    every backward graph (ZeRO reduces each parameter's gradient in every backward on every rank).
    """
    from forkrl.learner.entropy import token_logprobs_and_entropy

    plan = plan_packing(input_ids, attention_mask, where, bin_tokens)
    stand_in = plan.resp_ids.numel() == 0
    if stand_in:  # row 0, position 0, whatever its padding: the result is multiplied by 0
        one = torch.zeros_like(where, dtype=torch.bool)
        one[0, 0] = True
        plan = plan_packing(input_ids, torch.ones_like(attention_mask), one, bin_tokens)
    logits = packed_hidden_forward(forward, model, plan, dtype, device)
    rows, cols = plan.resp_row[plan.selected], plan.resp_col[plan.selected]
    targets = input_ids[rows.to(input_ids.device), (cols + 1).to(input_ids.device)]
    lp, ent = token_logprobs_and_entropy(logits, targets.to(device), temperature,
                                         chunk_size, entropy_grad=entropy_grad)
    index = (rows.to(lp.device), cols.to(lp.device))
    keep = 0.0 if stand_in else 1.0
    return (torch.zeros(where.shape, dtype=lp.dtype, device=lp.device).index_put(index, lp) * keep,
            torch.zeros(where.shape, dtype=ent.dtype, device=ent.device).index_put(index, ent) * keep)
