"""A decode loop near the memory-bandwidth floor: static KV cache, one captured CUDA graph per shape.

HF `generate` spends most of a batch-1 token in Python and kernel launches, not in reading
weights. Here the cache is preallocated (`StaticCache`), the attention mask is a 4D buffer we
update in place, and on CUDA the one-token step is captured once per (batch, cache length)
bucket and replayed, so a token costs one graph launch. On a CPU the same loop runs eagerly,
which keeps it testable against `generate` token for token.

Works with a visual prefix: the prompt arrives as `inputs_embeds` (left padded), exactly what
the assembled model builds after splicing the fusion tokens in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import StaticCache

from model.decoder import CACHE_ARG

# Cache lengths are rounded up to a multiple of this so a handful of graphs serve all prompts.
CACHE_BUCKET_TOKENS = 256
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0
    """0 means greedy."""
    top_p: float = 1.0
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    suppress_token_ids: tuple[int, ...] = ()
    """Ids never generated (the visual placeholder, pad): their logits are set to -inf."""


def _bucket(value: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if value <= b:
            return b
    return value


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _uses_boolean_mask(lm) -> bool:
    impl = getattr(lm.config, "_attn_implementation", "eager") or "eager"
    if "flash" in impl:
        raise ValueError("fast decode needs 'sdpa' or 'eager' attention (it passes its own 4D mask)")
    return impl != "eager"


MIN_SAMPLING_TEMPERATURE = 1e-4
"""Smallest temperature that samples; below it logits / temperature overflows float32 (inf -> NaN
probabilities), and the distribution is one-hot long before that anyway, so it is greedy."""


def pick_next_token(
    logits: torch.Tensor, cfg, generator: torch.Generator | Sequence[torch.Generator] | None
) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids: argmax when greedy, else temperature + nucleus sampling.

    `cfg` is anything with `temperature` and `top_p` (SamplingConfig, GenerationParams).
    `generator`: one for the whole batch, or one per row (rows past the list are greedy: batch
    padding), so a seeded row draws the same numbers whatever else is in its batch. Never NaN: a
    temperature under `MIN_SAMPLING_TEMPERATURE`, or a row whose probabilities are not finite, is
    decoded greedily."""
    greedy = logits.argmax(dim=-1)
    if cfg.temperature < MIN_SAMPLING_TEMPERATURE:
        return greedy
    scaled = logits.float() - logits.float().amax(dim=-1, keepdim=True)  # the best token at 0: no overflow
    probs = torch.softmax(scaled / float(cfg.temperature), dim=-1)
    if cfg.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always survives).
        outside = sorted_probs.cumsum(-1) - sorted_probs >= cfg.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    broken = ~(torch.isfinite(probs).all(dim=-1) & (probs.sum(dim=-1) > 0))  # (B,) e.g. NaN logits
    probs = torch.where(broken[:, None], torch.nn.functional.one_hot(greedy, probs.shape[-1]).to(probs), probs)
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    picked = greedy.clone()
    for i, gen in enumerate(generator[: probs.shape[0]]):
        picked[i] = torch.multinomial(probs[i], 1, generator=gen)[0]
    return picked


class _DecodeState:
    """Static buffers for one (batch, cache length) bucket, and its captured graph on CUDA."""

    def __init__(self, lm, batch: int, cache_len: int, boolean_mask: bool):
        param = next(lm.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.batch, self.cache_len, self.boolean_mask = batch, cache_len, boolean_mask
        self.cache = StaticCache(config=lm.config, max_cache_len=cache_len)
        self.input_ids = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        self.position_ids = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        self.cache_position = torch.zeros(1, dtype=torch.long, device=self.device)
        # (B, 1, 1, L): which cache slots each row may attend to on the next step.
        self.allowed = torch.zeros(batch, 1, 1, cache_len, dtype=torch.bool, device=self.device)
        self.mask = self._mask_from(self.allowed)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None

    def _mask_from(self, allowed: torch.Tensor) -> torch.Tensor:
        if self.boolean_mask:
            return allowed.clone()
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        return mask.masked_fill(~allowed, torch.finfo(self.dtype).min)

    def refresh_mask(self) -> None:
        if self.boolean_mask:
            self.mask.copy_(self.allowed)
        else:
            self.mask.copy_(self._mask_from(self.allowed))


class FastDecoder:
    """Generates from a left-padded `inputs_embeds` prompt with a static cache (and CUDA graphs).

    One instance per language model; it keeps one cache and graph per shape bucket, so it is
    not safe to call from two threads at once (the service runs all decoding on one thread).
    """

    def __init__(self, lm, use_cuda_graphs: bool | None = None):
        self.lm = lm
        self.boolean_mask = _uses_boolean_mask(lm)
        device = next(lm.parameters()).device
        self.use_cuda_graphs = device.type == "cuda" if use_cuda_graphs is None else use_cuda_graphs
        self._states: dict[tuple[int, int], _DecodeState] = {}

    def _state(self, batch: int, cache_len: int) -> _DecodeState:
        key = (batch, cache_len)
        if key not in self._states:
            self._states[key] = _DecodeState(self.lm, batch, cache_len, self.boolean_mask)
        return self._states[key]

    def _step_eager(self, state: _DecodeState) -> torch.Tensor:
        out = self.lm(
            input_ids=state.input_ids,
            position_ids=state.position_ids,
            cache_position=state.cache_position,
            attention_mask=state.mask,
            use_cache=True,
            **{CACHE_ARG: state.cache},
        )
        return out.logits[:, -1, :]

    def _step(self, state: _DecodeState) -> torch.Tensor:
        if not self.use_cuda_graphs:
            return self._step_eager(state)
        if state.graph is None:
            # Warm up on a side stream (allocator pools, lazy init), then capture one step.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._step_eager(state)
            torch.cuda.current_stream().wait_stream(stream)
            state.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(state.graph):
                state.logits = self._step_eager(state)
        state.graph.replay()
        return state.logits

    @torch.inference_mode()
    def generate(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        cfg: SamplingConfig,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        on_tokens: Callable[[torch.Tensor], None] | None = None,
        cancelled: Sequence[Callable[[], bool]] | None = None,
    ) -> torch.Tensor:
        """inputs_embeds (B, T, D), attention_mask (B, T) with left padding -> (B, n) new token ids.

        Rows that finished are padded with `pad_token_id`; decoding stops when every row has
        emitted an EOS, was cancelled (`cancelled[i]()` true, checked after every step) or
        `max_new_tokens` are out. `on_tokens` receives each step's (B,) ids. `generator`: one,
        or one per row (`pick_next_token`).
        """
        real_batch, prompt_len, _ = inputs_embeds.shape
        batch = _bucket(real_batch, BATCH_BUCKETS) if self.use_cuda_graphs else real_batch
        cache_len = _round_up(prompt_len + cfg.max_new_tokens, CACHE_BUCKET_TOKENS)
        state = self._state(batch, cache_len)
        state.cache.reset()

        embeds, mask2d = inputs_embeds, attention_mask.to(torch.long)
        if batch > real_batch:  # pad the batch to its bucket with copies of row 0, dropped at the end
            extra = batch - real_batch
            embeds = torch.cat([embeds, embeds[:1].expand(extra, -1, -1)])
            mask2d = torch.cat([mask2d, mask2d[:1].expand(extra, -1)])

        positions = (mask2d.cumsum(-1) - 1).clamp(min=0)  # (B, T): what `generate` derives
        state.allowed.zero_()
        state.allowed[:, 0, 0, :prompt_len] = mask2d.bool()
        causal = torch.ones(prompt_len, prompt_len, dtype=torch.bool, device=state.device).tril()
        prefill_allowed = torch.zeros(batch, 1, prompt_len, cache_len, dtype=torch.bool, device=state.device)
        prefill_allowed[..., :prompt_len] = causal & mask2d.bool()[:, None, None, :]
        prefill_mask = state._mask_from(prefill_allowed)
        out = self.lm(
            inputs_embeds=embeds.to(state.dtype),
            position_ids=positions,
            cache_position=torch.arange(prompt_len, device=state.device),
            attention_mask=prefill_mask,
            use_cache=True,
            **{CACHE_ARG: state.cache},
        )
        logits = out.logits[:, -1, :]

        next_position = positions[:, -1:] + 1
        eos = torch.tensor(cfg.eos_token_ids or [-1], device=state.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=state.device)
        suppress = torch.tensor(cfg.suppress_token_ids, dtype=torch.long, device=state.device)
        generated: list[torch.Tensor] = []
        for step in range(cfg.max_new_tokens):
            if suppress.numel():
                logits = logits.float().index_fill(-1, suppress, float("-inf"))
            token = pick_next_token(logits, cfg, generator)
            token = torch.where(finished, torch.full_like(token, cfg.pad_token_id), token)
            generated.append(token)
            if on_tokens is not None:
                on_tokens(token[:real_batch])
            finished |= torch.isin(token, eos)
            if cancelled is not None:
                done = finished.tolist()
                for i, is_cancelled in enumerate(cancelled):
                    if not done[i] and is_cancelled():
                        finished[i] = True
            if step == cfg.max_new_tokens - 1 or bool(finished[:real_batch].all()):
                break
            slot = prompt_len + step
            state.input_ids.copy_(token[:, None])
            state.position_ids.copy_(next_position)
            state.cache_position.fill_(slot)
            state.allowed[:, 0, 0, slot] = True
            state.refresh_mask()
            logits = self._step(state)
            next_position = next_position + 1
        return torch.stack(generated, dim=1)[:real_batch]
