import pytest

from inference.llama.checkpoint import tiny_llama_make


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """The default tiny checkpoint (make_tiny_llama's code path), built once per run."""
    return tiny_llama_make(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)
