"""Generation and multiple choice through the Pipeline API (tiny preset)."""

import pytest
import torch

import model
from model.errors import ModelError
from model.generation import GenerationParams, sample_next


def test_batched_equals_one_by_one_greedy(tiny_pipe, tiny_cts):
    # Questions of different lengths, so the batch really is left padded.
    questions = ["Is there a nodule?", "Describe the mediastinum and the heart size in one short sentence please."]
    params = GenerationParams(max_new_tokens=12)
    batched = tiny_pipe.answer(tiny_cts, questions, params)
    single = [tiny_pipe.answer([ct], [q], params)[0] for ct, q in zip(tiny_cts, questions)]
    for b, s in zip(batched, single):
        assert b.text == s.text and b.n_tokens == s.n_tokens


def test_sampling_is_reproducible_with_a_seed(tiny_pipe, tiny_cts):
    p = GenerationParams(max_new_tokens=10, temperature=1.5, top_p=0.95, seed=7)
    a = tiny_pipe.report(tiny_cts[:1], p)[0].text
    b = tiny_pipe.report(tiny_cts[:1], p)[0].text
    others = {tiny_pipe.report(tiny_cts[:1], GenerationParams(max_new_tokens=10, temperature=1.5, seed=s))[0].text
              for s in range(4)}
    assert a == b
    assert len(others) > 1  # different seeds sample different texts


def test_max_new_tokens_caps_and_streaming_matches_the_text(tiny_pipe, tiny_cts):
    deltas: dict[int, list[str]] = {0: [], 1: []}
    out = tiny_pipe.report(tiny_cts, GenerationParams(max_new_tokens=6), on_text=lambda i, d: deltas[i].append(d))
    for i, r in enumerate(out):
        assert r.n_tokens <= 6
        assert "".join(deltas[i]).strip() == r.text
        assert set(r.labels) == set(tiny_pipe.config.labels.names)
        assert all(0.0 <= v <= 1.0 for v in r.labels.values())
        assert 1 <= len(r.key_slices) <= 5
        weights = [k["weight"] for k in r.key_slices]
        assert weights == sorted(weights, reverse=True)
        assert {k["plane"] for k in r.key_slices} <= {"axial", "coronal", "sagittal"}
        assert set(r.timings_s) == {"encode", "generate"}


def test_generation_stops_at_a_stop_token_per_row():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])
    assert sample_next(logits, GenerationParams(), None).tolist() == [1, 0]
    # top_p small enough keeps only the best token even when sampling
    g = torch.Generator().manual_seed(0)
    picks = {int(sample_next(logits[:1], GenerationParams(temperature=1.0, top_p=0.5), g)) for _ in range(20)}
    assert picks == {1}


def test_placeholder_is_never_generated(tiny_pipe, tiny_cts):
    dec = tiny_pipe.model.decoder
    vid = tiny_pipe.model.vision_token_id
    lm_head = dec.base.get_output_embeddings()
    saved = lm_head.weight[vid].clone()
    with torch.no_grad():
        lm_head.weight[vid] = 100.0 * lm_head.weight.abs().max()  # make <|vision|> the favourite
        try:
            out = tiny_pipe.report(tiny_cts[:1], GenerationParams(max_new_tokens=5))
        finally:
            lm_head.weight[vid] = saved
    assert out[0].n_tokens == 5 and "<|vision|>" not in out[0].text


def test_choose_returns_an_option_with_probabilities(tiny_pipe, tiny_cts):
    choices = [["nodule", "mass", "cyst", "no abnormality at all"], ["yes", "no"]]
    out = tiny_pipe.choose(tiny_cts, ["Which lesion is seen?", "Is there an effusion?"], choices)
    for o, opts in zip(out, choices):
        assert o.answer in opts and opts[o.index] == o.answer and o.letter == "abcd"[o.index]
        assert len(o.probabilities) == len(opts)
        assert sum(o.probabilities) == pytest.approx(1.0, abs=1e-9)
        assert o.probabilities[o.index] == max(o.probabilities)
    # one question at a time gives the same probabilities (batching of options is exact)
    alone = tiny_pipe.choose(tiny_cts[1:], ["Is there an effusion?"], choices[1:])[0]
    assert alone.probabilities == pytest.approx(out[1].probabilities, abs=1e-5)


def test_bad_requests_raise_model_errors(tiny_pipe, tiny_cts):
    with pytest.raises(ModelError):
        tiny_pipe.choose(tiny_cts[:1], ["q?"], [["only one"]])
    with pytest.raises(ModelError):
        tiny_pipe.answer(tiny_cts, ["just one question"])
    with pytest.raises(ModelError):
        tiny_pipe.answer(tiny_cts[:1], ["   "])
    with pytest.raises(ModelError):
        GenerationParams(max_new_tokens=0)
    with pytest.raises(ModelError):
        GenerationParams(top_p=0.0)
    with pytest.raises(ModelError):
        tiny_pipe.answer(tiny_cts[:1], ["q?"], GenerationParams(max_new_tokens=4096))  # beyond the context
    assert tiny_pipe.report([]) == []


def test_public_api_surface():
    assert {"load", "build", "Pipeline", "GenerationParams", "ReportOutput", "AnswerOutput", "ChoiceOutput",
            "ModelError", "PreparedCT"} <= set(model.__all__)
    assert GenerationParams().to_dict() == {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "seed": None}


@pytest.mark.parametrize("merged", [False, True], ids=["lora", "merged"])
def test_fast_decode_path_gives_the_same_text_and_stream(tiny_cts, merged):
    import model

    plain = model.build("tiny", seed=3)
    fast = model.build("tiny", seed=3)
    if merged:
        plain.merge()
        fast.merge()
    fast.enable_fast_decode()
    params = GenerationParams(max_new_tokens=16)
    questions = ["Is there a nodule?", "Describe the mediastinum and the heart size in one short sentence please."]
    for pipe_call in (lambda p, **kw: p.report(tiny_cts, params, **kw),
                      lambda p, **kw: p.answer(tiny_cts, questions, params, **kw)):
        streams = {name: {0: [], 1: []} for name in ("plain", "fast")}
        want = pipe_call(plain, on_text=lambda i, d, s=streams["plain"]: s[i].append(d))
        got = pipe_call(fast, on_text=lambda i, d, s=streams["fast"]: s[i].append(d))
        assert [g.text for g in got] == [w.text for w in want]
        assert [g.n_tokens for g in got] == [w.n_tokens for w in want]
        assert streams["fast"] == streams["plain"]
    assert any(w.n_tokens > 2 for w in want)  # the comparison covered real decoding, not an instant stop


def test_shared_prompt_option_scoring_equals_scoring_each_row(tiny_pipe, tiny_cts):
    """score_options_shared (prompt once, KV cache repeated per option) gives the numbers of
    score_options on full prompt+option rows, with options of different lengths and counts."""
    import torch

    from model.batching import pad_prompts, to_device
    from model.generation import score_options, score_options_shared
    from model.prompts import encode, mcq_answer, mcq_prompt

    pipe = tiny_pipe
    cfg = pipe.config.prompt
    questions = [("Is there a pleural effusion?", ["yes", "no", "cannot be assessed on this scan"]),
                 ("Which lobe?", ["Right upper lobe", "Left lower lobe"])]
    with torch.inference_mode():
        visual, batch = pipe._encode(tiny_cts)
        n_ph = pipe.model.n_placeholders(int(batch["slices"].shape[1]))
        prompts = [mcq_prompt(cfg, n_ph, q, opts) for q, opts in questions]
        # reference: one row per (question, option)
        rows = [encode(pipe.tokenizer, cfg, prompts[i], mcq_answer(cfg, j, o), close=False)
                for i, (_, opts) in enumerate(questions) for j, o in enumerate(opts)]
        text = to_device(pad_prompts(rows, int(pipe.tokenizer.pad_token_id), side="left"), pipe.device)
        embeds, _ = pipe.model.build_inputs_embeds(visual.repeat([3, 2]), text["input_ids"], text["attention_mask"],
                                                   text["prompt_mask"])
        reference = score_options(pipe.model.decoder, embeds, text["attention_mask"], text["labels"])
        # shared: prompts once
        ptext = pipe._prompt_batch(prompts)
        pembeds, _ = pipe.model.build_inputs_embeds(visual, ptext["input_ids"], ptext["attention_mask"],
                                                    ptext["prompt_mask"])
        answer_ids = [[pipe.tokenizer(mcq_answer(cfg, j, o), add_special_tokens=False)["input_ids"]
                       for j, o in enumerate(opts)] for _, opts in questions]
        shared = score_options_shared(pipe.model.decoder, pembeds, ptext["attention_mask"], answer_ids,
                                      int(pipe.tokenizer.pad_token_id))
    assert [len(s) for s in shared] == [3, 2]
    torch.testing.assert_close(torch.cat(shared), reference, atol=1e-5, rtol=1e-5)
