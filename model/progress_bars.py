"""Quiet loading: transformers' progress bars off while it loads, converts or writes weights."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial


@contextmanager
def no_progress_bars(gguf: bool = False):
    """transformers' per-tensor progress bars off while it loads, converts or writes weights.

    Loading a 135M LM takes a second or two; its "Loading weights" / "Writing model shards" /
    GGUF "de-quantizing" bars are noise in a CLI's output that nobody asked for. The GGUF
    converter uses plain `tqdm.auto`, not transformers' switchable one, so it gets a disabled
    tqdm for the duration. The previous state is restored on the way out.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_utils = None
    if gguf:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils

        real_tqdm = getattr(gguf_utils, "tqdm", None)
        if real_tqdm is not None:
            gguf_utils.tqdm = partial(real_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_utils is not None and real_tqdm is not None:
            gguf_utils.tqdm = real_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()
