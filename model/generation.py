"""Decoding from a (left-padded) `inputs_embeds` prompt, and multiple-choice scoring.

`generate`: greedy by default; temperature + nucleus (top_p) sampling with one seeded
generator per row (a seeded request samples the same text alone or in any batch); a cap on
new tokens; batched with left padding, each row stops on its own at a stop token or when it is
cancelled (its client left), and a row that stopped leaves the batch, so it costs no more
compute; an `on_tokens` callback sees every step. Tokens that must never be produced (the
visual placeholder, pad) are suppressed.

`score_options`: multiple choice by likelihood. Each option's answer text is scored by the
MEAN log-probability of its tokens given the prompt (length-normalised: options have
different lengths, and a sum would favour the shortest); a softmax over the per-option
means gives the probabilities, and the answer is the argmax, so it is always an option.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from model.ctscribe_model import position_ids_from_mask
from model.decoder import Decoder, cache_of
from model.errors import invalid
from model.fast_decode import MIN_SAMPLING_TEMPERATURE, pick_next_token

MAX_NEW_TOKENS_LIMIT = 4096


@dataclass(frozen=True)
class GenerationParams:
    """How text is decoded."""

    max_new_tokens: int = 256
    """Cap on generated tokens per answer."""
    temperature: float = 0.0
    """0 = greedy; otherwise at least `MIN_SAMPLING_TEMPERATURE` (1e-4), sampling from
    softmax(logits / temperature)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    seed: int | None = None
    """Seed of each row's sampling generator (None: a fresh random seed per row)."""

    def __post_init__(self) -> None:
        if not 1 <= int(self.max_new_tokens) <= MAX_NEW_TOKENS_LIMIT:
            raise invalid(f"max_new_tokens must be in 1..{MAX_NEW_TOKENS_LIMIT}, got {self.max_new_tokens}")
        temperature = float(self.temperature)
        if not (temperature == 0.0 or MIN_SAMPLING_TEMPERATURE <= temperature <= 10.0):
            raise invalid(f"temperature must be 0 (greedy) or in [{MIN_SAMPLING_TEMPERATURE:g}, 10], "
                          f"got {self.temperature}")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise invalid(f"top_p must be in (0, 1], got {self.top_p}")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_next(
    logits: torch.Tensor, params: GenerationParams, generator: torch.Generator | Sequence[torch.Generator] | None
) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids (the one sampler both decode paths use); `generator`: one,
    or one per row."""
    return pick_next_token(logits, params, generator)


def row_generators(params: GenerationParams, n_rows: int, device: torch.device) -> list[torch.Generator] | None:
    """One sampling generator per row, each seeded with `params.seed` (a fresh seed per row when
    None), so a row's draws do not depend on its batch; None when greedy."""
    if params.temperature <= 0:
        return None
    gens = []
    for _ in range(n_rows):
        gen = torch.Generator(device=device)
        if params.seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(params.seed))
        gens.append(gen)
    return gens


@torch.inference_mode()
def generate(
    decoder: Decoder,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    params: GenerationParams,
    stop_ids: tuple[int, ...],
    suppress_ids: tuple[int, ...] = (),
    on_tokens: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    cancelled: Sequence[Callable[[], bool]] | None = None,
) -> list[list[int]]:
    """inputs_embeds (B, T, D), attention_mask (B, T) left padded -> new token ids per row.

    Each row's list ends at (and excludes) its first stop token, or at the step after which
    `cancelled[i]()` (checked every step) said its result is no longer wanted. A row that
    stopped leaves the batch (its KV cache rows are dropped); when none is left, the loop ends.
    `on_tokens(ids (B,), alive (B,))` is called after every step with the step's tokens and
    which rows were still generating.
    """
    b = inputs_embeds.shape[0]
    dev = inputs_embeds.device
    mask = attention_mask.long().to(dev)
    positions = position_ids_from_mask(mask)
    generators = row_generators(params, b, dev)
    stops = torch.tensor(list(stop_ids) or [-1], device=dev)
    suppress = torch.tensor(list(suppress_ids), dtype=torch.long, device=dev)

    out = decoder(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    past = cache_of(out)
    logits = out.logits[:, -1]  # (A, V): A rows still generating, A = B at first
    next_pos = positions[:, -1:] + 1  # (A, 1)
    active = list(range(b))  # (A,) the batch row each generating row is
    rows: list[list[int]] = [[] for _ in range(b)]
    for step in range(params.max_new_tokens):
        if suppress.numel():
            logits = logits.float().index_fill(-1, suppress, float("-inf"))
        token = sample_next(logits, params, None if generators is None else [generators[i] for i in active])  # (A,)
        live = (~torch.isin(token, stops)).tolist()
        for k, i in enumerate(active):
            if live[k]:
                rows[i].append(int(token[k]))
        if on_tokens is not None:
            where = torch.tensor(active, device=dev)
            on_tokens(torch.zeros(b, dtype=token.dtype, device=dev).index_copy(0, where, token),
                      torch.zeros(b, dtype=torch.bool, device=dev).index_copy(0, where, torch.tensor(live, device=dev)))
        if cancelled is not None:
            live = [ok and not cancelled[i]() for ok, i in zip(live, active)]
        if not any(live) or step == params.max_new_tokens - 1:
            break
        if not all(live):  # rows that stopped leave the batch: they cost no more compute
            keep = torch.tensor([k for k, ok in enumerate(live) if ok], device=dev)
            past.batch_select_indices(keep)
            mask, next_pos, token = mask[keep], next_pos[keep], token[keep]
            active = [i for i, ok in zip(active, live) if ok]
        mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype, device=dev)], dim=1)
        out = decoder(
            input_ids=token.unsqueeze(1),
            attention_mask=mask,
            position_ids=next_pos,
            past_key_values=past,
            use_cache=True,
        )
        past = cache_of(out)
        logits = out.logits[:, -1]
        next_pos = next_pos + 1
    return rows


@torch.inference_mode()
def fast_generate(
    fast,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    params: GenerationParams,
    stop_ids: tuple[int, ...],
    suppress_ids: tuple[int, ...] = (),
    on_tokens: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    cancelled: Sequence[Callable[[], bool]] | None = None,
) -> list[list[int]]:
    """`generate`'s contract on a `model.fast_decode.FastDecoder` (static cache, CUDA graphs).

    Greedy output equals `generate` token for token; both paths sample with the same function.
    A cancelled row stays in the captured batch shape but is finished (pad from then on).
    """
    from model.fast_decode import SamplingConfig

    b = inputs_embeds.shape[0]
    dev = inputs_embeds.device
    stop_set = set(stop_ids)
    alive = [True] * b
    rows: list[list[int]] = [[] for _ in range(b)]

    def step(token: torch.Tensor) -> None:
        ids = token.tolist()
        live = [ok and t not in stop_set for ok, t in zip(alive, ids)]
        for i, ok in enumerate(live):
            if ok:
                rows[i].append(ids[i])
        if on_tokens is not None:
            on_tokens(token, torch.tensor(live, device=dev))
        alive[:] = live

    def stopped(i: int, is_cancelled: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            if alive[i] and is_cancelled():
                alive[i] = False
            return not alive[i]
        return check

    cfg = SamplingConfig(max_new_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
                         eos_token_ids=tuple(stop_ids), suppress_token_ids=tuple(suppress_ids))
    checks = None if cancelled is None else [stopped(i, c) for i, c in enumerate(cancelled)]
    fast.generate(inputs_embeds, attention_mask, cfg, row_generators(params, b, dev), on_tokens=step, cancelled=checks)
    return rows


@torch.inference_mode()
def score_options(
    decoder: Decoder,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """(R, T) sequences of prompt + option answer -> (R,) mean log-prob of the labelled tokens."""
    positions = position_ids_from_mask(attention_mask)
    logits = decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=positions).logits
    target = labels[:, 1:]  # (R, T-1): token t+1 is predicted at position t
    valid = target != -100
    logp = torch.log_softmax(logits[:, :-1][valid].float(), dim=-1)  # (K, V): answer positions only
    picked = logp.gather(-1, target[valid].unsqueeze(-1)).squeeze(-1)  # (K,)
    rows = torch.nonzero(valid)[:, 0]  # (K,) which sequence each scored token belongs to
    total = torch.zeros(labels.shape[0], dtype=picked.dtype, device=picked.device).index_add(0, rows, picked)
    return total / valid.sum(-1).clamp(min=1)


def score_options_shared(
    decoder: Decoder,
    prompt_embeds: torch.Tensor,
    prompt_mask: torch.Tensor,
    options: list[list[list[int]]],
    pad_id: int,
) -> list[torch.Tensor]:
    """Multiple choice with the prompt computed once: (Q, T) left-padded prompts and, per
    prompt, its options' answer token ids -> per prompt, (n_options,) mean log-prob of the
    option tokens. The same numbers as `score_options` on prompt+option rows, at the cost of
    one prompt pass per question instead of one per option (the KV cache is repeated per
    option) and with logits only where an option token is predicted.
    """
    dev = prompt_embeds.device
    mask = prompt_mask.long().to(dev)
    positions = position_ids_from_mask(mask)
    out = decoder(inputs_embeds=prompt_embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                  logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (Q, V): predicts each option's first token
    counts = [len(o) for o in options]
    which = torch.repeat_interleave(torch.arange(len(options), device=dev), torch.tensor(counts, device=dev))
    past = cache_of(out)
    past.batch_select_indices(which)  # (R, ...) one copy of each prompt's cache per option
    flat = [ids for opts in options for ids in opts]
    if any(not ids for ids in flat):
        raise ValueError("an option has no tokens")
    width = max(len(ids) for ids in flat)
    ids = torch.full((len(flat), width), pad_id, dtype=torch.long, device=dev)
    valid = torch.zeros(len(flat), width, dtype=torch.bool, device=dev)
    for r, t in enumerate(flat):
        ids[r, : len(t)] = torch.tensor(t, device=dev)
        valid[r, : len(t)] = True
    logp_first = first[which].gather(-1, ids[:, :1]).squeeze(-1)  # (R,)
    total = logp_first
    if width > 1:
        full_mask = torch.cat([mask[which], valid.long()], dim=1)  # right padding after the options
        pos = positions[which, -1:] + 1 + torch.arange(width - 1, device=dev)  # (R, width - 1)
        step = decoder(input_ids=ids[:, :-1], attention_mask=full_mask[:, :-1], position_ids=pos,
                       past_key_values=past, use_cache=True)
        logp = torch.log_softmax(step.logits.float(), dim=-1)  # (R, width - 1, V)
        picked = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (R, width - 1)
        total = total + (picked * valid[:, 1:]).sum(-1)
    scores = total / valid.sum(-1)
    return list(scores.split(counts))


class TextStream:
    """Turns per-step token ids into text deltas per row (for streaming callbacks).

    Decodes each row's tokens so far and emits what was added since the last call; text that
    ends in an incomplete UTF-8 sequence (U+FFFD) is held back until it completes.
    """

    def __init__(self, tokenizer, n_rows: int, emit: Callable[[int, str], None]):
        self.tokenizer = tokenizer
        self.emit = emit
        self.ids: list[list[int]] = [[] for _ in range(n_rows)]
        self.sent = [0] * n_rows

    def __call__(self, token: torch.Tensor, alive: torch.Tensor) -> None:
        for i in torch.nonzero(alive).flatten().tolist():
            self.ids[i].append(int(token[i]))
            text = self.tokenizer.decode(self.ids[i], skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue
            if len(text) > self.sent[i]:
                self.emit(i, text[self.sent[i] :])
                self.sent[i] = len(text)
