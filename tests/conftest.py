"""Shared test setup. The Hub environment is set before anything imports huggingface_hub.

``huggingface_hub`` reads HF_ENDPOINT / HF_HOME / HF_HUB_DISABLE_XET at import time, so they are set
here, at the top, pointing at the local Hub-protocol server of tests/hub_server.py (started lazily
by the ``hub_server`` fixture) and a throwaway cache. GENZOO_MODEL_CARDS is left alone: the
bundled-checkpoint tests use the repo's model_cards/.
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HUB_PORT = _free_port()
HUB_ENDPOINT = f"http://127.0.0.1:{HUB_PORT}"
_HF_HOME = tempfile.mkdtemp(prefix="genzoo-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ.update({
    "HF_ENDPOINT": HUB_ENDPOINT,
    "HF_HOME": _HF_HOME,
    "HF_HUB_DISABLE_XET": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_ETAG_TIMEOUT": "5",
    "HF_HUB_DOWNLOAD_TIMEOUT": "5",
})
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
    os.environ.pop(_var, None)
if "huggingface_hub" in sys.modules:  # too late: it would talk to the real Hub / user cache
    raise RuntimeError("huggingface_hub was imported before tests/conftest.py could configure it")

import pytest  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import constants as _hf_constants  # noqa: E402

assert _hf_constants.ENDPOINT == HUB_ENDPOINT and _hf_constants.HF_HOME == _HF_HOME

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def hub_server():
    """The local Hub (session-wide; repos persist across tests, so use unique repo names)."""
    from hub_server import HubServer

    server = HubServer(HUB_PORT).start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def hub(hub_server):
    """The local Hub with an empty request log."""
    hub_server.clear()
    return hub_server


@pytest.fixture
def tiny_model():
    """An untrained tests/tiny_models.TinyModel with seed-0 weights."""
    from tiny_models import tiny

    return tiny(0)
