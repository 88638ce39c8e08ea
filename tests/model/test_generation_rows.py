"""Per-row generation: seeded sampling independent of the batch, cancellation per row, a sampler
without a NaN path (tiny preset, both decode paths)."""

import pytest
import torch

import model
from model.errors import ModelError
from model.fast_decode import MIN_SAMPLING_TEMPERATURE, SamplingConfig, pick_next_token
from model.generation import GenerationParams, generate

SAMPLED = GenerationParams(max_new_tokens=12, temperature=1.0, seed=7)


@pytest.fixture(scope="module")
def fast_pipe():
    pipe = model.build("tiny", seed=0)  # the same weights as `tiny_pipe`
    return pipe.enable_fast_decode()


@pytest.mark.parametrize("path", ["hf", "fast"])
def test_a_seeded_request_samples_the_same_text_alone_and_batched(tiny_pipe, fast_pipe, tiny_cts, path):
    pipe = tiny_pipe if path == "hf" else fast_pipe
    ct, other = tiny_cts
    alone = pipe.report([ct], SAMPLED)[0].text
    batched = pipe.report([other, ct, ct], SAMPLED)
    assert batched[1].text == alone and batched[2].text == alone
    question = "Is there a nodule?"
    alone = pipe.answer([ct], [question], SAMPLED)[0].text
    assert pipe.answer([ct, other], [question, "Describe the heart."], SAMPLED)[0].text == alone


def test_unseeded_rows_draw_independently(tiny_pipe, tiny_cts):
    ct = tiny_cts[0]
    texts = {o.text for o in tiny_pipe.report([ct] * 4, GenerationParams(max_new_tokens=12, temperature=1.5))}
    assert len(texts) > 1


class _CountingDecoder:
    """Records the batch size of every decoder forward `generate` makes."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.batch_sizes: list[int] = []

    def __call__(self, **kwargs):
        x = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
        self.batch_sizes.append(int(x.shape[0]))
        return self.decoder(**kwargs)


def _prompt(pipe, cts):
    from model.prompts import report_prompt

    visual, batch = pipe._encode(cts)
    n_ph = pipe.model.n_placeholders(int(batch["slices"].shape[1]))
    text = pipe._prompt_batch([report_prompt(pipe.config.prompt, n_ph, "") for _ in cts])
    embeds, _ = pipe.model.build_inputs_embeds(visual, text["input_ids"], text["attention_mask"], text["prompt_mask"])
    return embeds, text["attention_mask"]


def _after(n_steps: int):
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] >= n_steps

    return cancelled


def test_a_cancelled_row_stops_and_leaves_the_batch(tiny_pipe, tiny_cts):
    embeds, mask = _prompt(tiny_pipe, tiny_cts)
    params = GenerationParams(max_new_tokens=10)
    full = generate(tiny_pipe.model.decoder, embeds, mask, params, stop_ids=())
    spy = _CountingDecoder(tiny_pipe.model.decoder)
    rows = generate(spy, embeds, mask, params, stop_ids=(), cancelled=[lambda: False, _after(3)])
    assert rows[0] == full[0]  # the other row is untouched
    assert rows[1] == full[1][:3]  # three tokens, then the cancellation was seen
    # prompt pass, two more steps with both rows, then the cancelled row costs nothing
    assert spy.batch_sizes == [2, 2, 2] + [1] * 7


def test_when_every_row_is_cancelled_the_loop_ends(tiny_pipe, tiny_cts):
    embeds, mask = _prompt(tiny_pipe, tiny_cts)
    spy = _CountingDecoder(tiny_pipe.model.decoder)
    steps: list[int] = []
    rows = generate(spy, embeds, mask, GenerationParams(max_new_tokens=50), stop_ids=(),
                    on_tokens=lambda t, alive: steps.append(int(alive.sum())), cancelled=[_after(2), _after(2)])
    assert [len(r) for r in rows] == [2, 2] and steps == [2, 2] and len(spy.batch_sizes) == 2


def test_the_fast_path_cancels_rows_too(fast_pipe, tiny_cts):
    from model.generation import fast_generate

    embeds, mask = _prompt(fast_pipe, tiny_cts)
    params = GenerationParams(max_new_tokens=10)
    full = fast_generate(fast_pipe._fast, embeds, mask, params, stop_ids=())
    rows = fast_generate(fast_pipe._fast, embeds, mask, params, stop_ids=(), cancelled=[lambda: False, _after(3)])
    assert rows[0] == full[0] and rows[1] == full[1][:3]
    steps: list[int] = []
    fast_generate(fast_pipe._fast, embeds, mask, GenerationParams(max_new_tokens=50), stop_ids=(),
                  on_tokens=lambda t, alive: steps.append(int(alive.sum())), cancelled=[_after(2), _after(2)])
    assert steps == [2, 2]


@pytest.mark.parametrize("temperature", [1e-45, 1e-30, MIN_SAMPLING_TEMPERATURE / 2, float("nan"), float("inf"), -1.0])
def test_temperatures_that_cannot_sample_are_invalid(temperature):
    with pytest.raises(ModelError) as info:
        GenerationParams(temperature=temperature)
    assert info.value.code.value == "invalid_request"


def test_zero_and_the_smallest_sampling_temperature_are_valid():
    assert GenerationParams(temperature=0.0).temperature == 0.0
    assert GenerationParams(temperature=MIN_SAMPLING_TEMPERATURE).temperature == MIN_SAMPLING_TEMPERATURE


@pytest.mark.parametrize("temperature", [1e-45, 1e-30, MIN_SAMPLING_TEMPERATURE])
def test_the_sampler_has_no_nan_path(temperature):
    # Below float32's range logits / temperature overflows; the sampler must still pick the best token.
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0], [2.0, 2.0 + 1e-3, -float("inf")]])
    gen = torch.Generator().manual_seed(0)
    picked = pick_next_token(logits, SamplingConfig(temperature=temperature), gen)
    assert picked.tolist() == [1, 0, 1]


def test_a_row_of_unusable_logits_is_decoded_greedily_not_an_error():
    logits = torch.tensor([[float("nan"), 1.0, 0.0], [-float("inf")] * 3, [0.0, 1.0, 2.0]])
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    picked = pick_next_token(logits, SamplingConfig(temperature=1.0), gens)
    assert picked.shape == (3,) and 0 <= int(picked[2]) < 3
