"""A tiny SentencePiece (slow Llama) tokenizer directory, as the SAMF release's
`save_pretrained` of its slow tokenizer writes it: tokenizer.model, tokenizer_config.json,
special_tokens_map.json, added_tokens.json — no tokenizer.json. Trained here in well under a
second, so tests need no download."""

from __future__ import annotations

import io
import json
from pathlib import Path

SAMF_ADDED_TOKENS = ("<im_patch>", "<bx_start>", "<bx_end>")
_CORPUS = [
    "Can you provide a caption consists of findings for this medical image?",
    "Describe the findings of the medical image you see.",
    "Which of the following findings are present in the right lung of this Chest CT image?",
    "Choices: a. Normal aeration b. A few millimetric nonspecific nodules c. Enlarged lymph nodes d. Infiltrative lesion",
    "b. Mild recessions. Trachea and both main bronchi are open. No pleural effusion.",
    "Heart contour and size are normal. Bilateral atelectasis in the lower lobes.",
]


def write_slow_tokenizer(directory: Path, add_bos_token: bool, add_eos_token: bool = False) -> Path:
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 20), model_writer=buffer, vocab_size=420, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        hard_vocab_limit=False, minloglevel=2,
    )
    (directory / "tokenizer.model").write_bytes(buffer.getvalue())
    n_pieces = spm.SentencePieceProcessor(model_proto=buffer.getvalue()).get_piece_size()
    added = {tok: n_pieces + i for i, tok in enumerate(SAMF_ADDED_TOKENS)}
    special = {"<unk>": 0, "<s>": 1, "</s>": 2} | added
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": add_bos_token,
        "add_eos_token": add_eos_token,
        "legacy": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<unk>",
        "model_max_length": 512,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "sp_model_kwargs": {},
        "additional_special_tokens": list(SAMF_ADDED_TOKENS),
        "added_tokens_decoder": {
            str(i): {"content": tok, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for tok, i in special.items()
        },
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>",
         "additional_special_tokens": list(SAMF_ADDED_TOKENS)}))
    (directory / "added_tokens.json").write_text(json.dumps(added))
    return directory
