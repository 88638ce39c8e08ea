"""WordNet 3.0 for METEOR from Debian's `wordnet-base` package, read by nltk without a download.

Debian installs the WordNet database as `/usr/share/wordnet/{index,data}.{noun,verb,adj,adv}`
plus `*.exc` and (from `wordnet-sense-index`) `index.sense`, but not the `lexnames` file that
nltk's `WordNetCorpusReader` opens on construction. That file is a fixed table of WordNet's
45 lexicographer file names (documented in lexnames(5WN), shipped by `wordnet-base` as a man
page), so the reader below serves it from memory. There is no `nltk.download`: the machines
this runs on cannot reach nltk's server.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

from ctscribe.errors import CtscribeError, ErrorCode

# Where to look, in order: an explicit override, Debian/Ubuntu's package, a WordNet-3.0 install.
WORDNET_DIR_ENV = "CTSCRIBE_WORDNET_DIR"
CANDIDATE_DIRS = ("/usr/share/wordnet", "/usr/local/WordNet-3.0/dict", "/usr/share/WordNet-3.0/dict")
REQUIRED_FILES = ("index.noun", "data.noun", "index.adj", "data.adj", "index.verb", "data.verb",
                  "index.adv", "data.adv")

# WordNet 3.0 lexicographer files, numbered 00..44 (lexnames(5WN)).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def lexnames_text() -> str:
    """The `lexnames` file: `NN<TAB>name<TAB>category` per line."""
    return "".join(
        f"{i:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def find_wordnet_dir() -> Path:
    """The first directory holding the WordNet database files, or `invalid_request`."""
    candidates = [os.environ[WORDNET_DIR_ENV]] if os.environ.get(WORDNET_DIR_ENV) else []
    candidates += list(CANDIDATE_DIRS)
    for candidate in candidates:
        path = Path(candidate)
        if all((path / name).is_file() for name in REQUIRED_FILES):
            return path
    raise CtscribeError(
        ErrorCode.INVALID_REQUEST,
        "WordNet not found for METEOR: install Debian's wordnet-base and wordnet-sense-index "
        f"(apt-get install wordnet-base wordnet-sense-index) or set {WORDNET_DIR_ENV} to a WordNet 3.0 dict dir",
    )


@lru_cache(maxsize=2)
def load_wordnet(directory: str | None = None):
    """An nltk `WordNetCorpusReader` over a WordNet dict directory (cached; ~seconds to build)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = Path(directory) if directory else find_wordnet_dir()
    # nltk only opens corpora under its data path roots.
    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(root))

    class _DebianWordNetReader(WordNetCorpusReader):
        def open(self, file):
            if file == "lexnames" and not (root / "lexnames").is_file():
                return io.StringIO(lexnames_text())
            return super().open(file)

        def map_wn(self, version="wordnet"):
            # The mapping exists for the multilingual (OMW) data, which METEOR never uses and
            # which would need another nltk download.
            return None

    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        return _DebianWordNetReader(str(root), None)
