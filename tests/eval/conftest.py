"""Eval tests run offline: hub/evaluate offline flags and a socket guard that fails any connection."""

import os
import socket
from pathlib import Path

import pytest

os.environ["HF_EVALUATE_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        return original(self, address, *args, **kwargs)

    original = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="session")
def reports_dir() -> Path:
    path = DATA_DIR / "reports"
    if not path.is_dir():
        pytest.skip(f"real report data not found at {path} (../shared/data is absent)")
    return path


def wordnet_available() -> bool:
    from ctscribe.errors import CtscribeError
    from eval.wordnet import find_wordnet_dir

    try:
        find_wordnet_dir()
        return True
    except CtscribeError:
        return False
