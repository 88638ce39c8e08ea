"""The assembled model: shapes per stage, the placeholder splice, what the fusion may read, losses."""

import pytest
import torch

from fusion.base import FusionOutput
from model.batching import pad_prompts, stack_cts
from model.errors import ModelError
from model.prompts import encode, report_prompt


def _batch(pipe, cts, answers, side="right"):
    m = pipe.model
    cfg = m.cfg.prompt
    prompt = report_prompt(cfg, m.n_placeholders(cts[0].n_slices))
    enc = [encode(pipe.tokenizer, cfg, prompt, a) for a in answers]
    return {**stack_cts(cts), **pad_prompts(enc, pipe.tokenizer.pad_token_id, side=side)}


def test_shapes_through_every_stage(tiny_pipe, tiny_cts):
    m, cfg = tiny_pipe.model, tiny_pipe.config
    batch = _batch(tiny_pipe, tiny_cts, ["Normal.", "Small nodule in the right lung."])
    b, s = 2, cfg.preprocess.n_total
    assert batch["slices"].shape == (b, s, 3, cfg.encoder.image_size, cfg.encoder.image_size)
    with torch.no_grad():
        feats = m.encoder(batch["slices"])
        assert feats.shape == (b, s, cfg.encoder.d_slice)
        visual = m.encode_volume(batch["slices"], batch["plane_ids"], batch["positions"], batch["slice_mask"])
        assert visual.z3d.shape == (b, cfg.aggregator.d_volume)
        assert visual.slices.shape == (b, s, cfg.aggregator.d_slice)
        assert visual.label_logits.shape == (b, 18)
        embeds, fused = m.build_inputs_embeds(visual, batch["input_ids"], batch["attention_mask"], batch["prompt_mask"])
        n = m.n_placeholders(s)
        assert n == 1 + s  # ao2d: fused token + one token per slice
        assert fused.tokens.shape == (b, n, cfg.decoder.hidden_size)
        assert fused.slice_attention.shape == (b, s)
        assert embeds.shape == (*batch["input_ids"].shape, cfg.decoder.hidden_size)
        out = m(batch)
    assert out.logits.shape == (*batch["input_ids"].shape, len(tiny_pipe.tokenizer))
    assert out.loss is not None and torch.isfinite(out.loss)
    assert torch.allclose(out.loss, out.lm_loss)  # no label targets: LM loss only


def test_splice_lands_where_the_mask_says(tiny_pipe):
    m = tiny_pipe.model
    vid = m.vision_token_id
    d = m.cfg.decoder.hidden_size
    ids = torch.tensor([[5, vid, 7, 8, vid, vid, 9, vid], [vid, 11, 12, vid, 13, vid, vid, 14]])  # scattered, differing
    tokens = torch.randn(2, 4, d)
    fused = FusionOutput(tokens=tokens, slice_attention=torch.ones(2, 1))
    with torch.no_grad():
        plain = m.decoder.embed_tokens(ids)
        spliced = m.splice(plain, ids, fused)
    for row in range(2):
        where = (ids[row] == vid).nonzero().flatten().tolist()
        for k, pos in enumerate(where):
            assert torch.equal(spliced[row, pos], tokens[row, k])
        others = [p for p in range(ids.shape[1]) if p not in where]
        assert torch.equal(spliced[row, others], plain[row, others])


def test_wrong_placeholder_count_is_refused(tiny_pipe):
    m = tiny_pipe.model
    ids = torch.tensor([[5, m.vision_token_id, 7]])
    fused = FusionOutput(tokens=torch.randn(1, 2, m.cfg.decoder.hidden_size), slice_attention=torch.ones(1, 1))
    with pytest.raises(ModelError):
        m.splice(m.decoder.embed_tokens(ids), ids, fused)


def test_fusion_never_sees_answer_tokens(tiny_pipe, tiny_cts):
    m = tiny_pipe.model.eval()
    # Same token length, different words: only the answer differs between the two batches.
    a = _batch(tiny_pipe, tiny_cts[:1], ["lung lung lung"])
    b = dict(a)
    ans = a["labels"] != -100
    b["input_ids"] = a["input_ids"].clone()
    b["input_ids"][ans] = (a["input_ids"][ans] + 17) % 500 + 10
    b["labels"] = torch.where(ans, b["input_ids"], a["labels"])
    with torch.no_grad():
        out_a, out_b = m(a), m(b)
        assert torch.equal(out_a.visual_tokens, out_b.visual_tokens)
        assert not torch.equal(out_a.logits, out_b.logits)
        # ...while the prompt itself is read: change a prompt word and the visual tokens move
        c = dict(a)
        c["input_ids"] = a["input_ids"].clone()
        text_pos = (a["prompt_mask"] & (a["input_ids"] != m.vision_token_id)).nonzero()[-3]
        c["input_ids"][tuple(text_pos)] = 300
        assert not torch.equal(m(c).visual_tokens, out_a.visual_tokens)


def test_lm_loss_covers_answer_tokens_only(tiny_pipe, tiny_cts):
    m = tiny_pipe.model.eval()
    batch = _batch(tiny_pipe, tiny_cts, ["Normal.", "Pleural effusion on the left."])
    with torch.no_grad():
        out = m(batch)
        logits = out.logits[:, :-1]
        target = batch["labels"][:, 1:]
        keep = target != -100
        expected = torch.nn.functional.cross_entropy(logits[keep], target[keep])
        assert torch.allclose(out.lm_loss, expected, atol=1e-6)
        # the prompt's tokens are not targets: the count of targets is the answers' length
        n_answer = sum(len(encode(tiny_pipe.tokenizer, m.cfg.prompt, "", a).input_ids) - encode(
            tiny_pipe.tokenizer, m.cfg.prompt, "").n_prompt for a in ["Normal.", "Pleural effusion on the left."])
        assert int(keep.sum()) == n_answer


def test_label_loss_is_bce_over_known_labels(tiny_pipe, tiny_cts):
    m = tiny_pipe.model.eval()
    batch = _batch(tiny_pipe, tiny_cts, ["Normal.", "Normal."])
    targets = torch.zeros(2, 18)
    targets[0, 3] = 1.0
    targets[1] = float("nan")  # second CT has no labels
    batch["label_targets"] = targets
    with torch.no_grad():
        out = m(batch)
        expected = torch.nn.functional.binary_cross_entropy_with_logits(out.label_logits[0], targets[0])
    assert torch.allclose(out.label_loss, expected, atol=1e-6)
    assert torch.allclose(out.loss, out.lm_loss + m.cfg.labels.loss_weight * out.label_loss)


def test_cached_slice_features_give_the_same_result(tiny_pipe, tiny_cts):
    m = tiny_pipe.model.eval()
    batch = _batch(tiny_pipe, tiny_cts, ["Normal.", "Normal."])
    with torch.no_grad():
        direct = m(batch).logits
        cached = dict(batch, slice_features=m.encoder(batch["slices"]))
        cached.pop("slices")
        assert torch.allclose(m(cached).logits, direct, atol=1e-6)
