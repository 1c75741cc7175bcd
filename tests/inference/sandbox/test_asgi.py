"""/v1/ under uvicorn, the ASGI server the deployment runs it on: a stream arrives frame by frame
from an async view (no sync worker held), and a client that hangs up cancels its job."""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import time

import openai
import pytest
from django.conf import settings

from inference.sandbox.models import JobStatus, SandboxJob
from tests.processes import free_port, http_server, subprocess_database_url

pytestmark = pytest.mark.real_worker

START_SECONDS = 60


@contextlib.contextmanager
def _uvicorn(folders: dict):
    port = free_port()
    env = {
        **os.environ,
        **folders,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": subprocess_database_url(),
        "SANDBOX_TRANSPORT": settings.SANDBOX_TRANSPORT,
        "SANDBOX_HEARTBEAT_TIMEOUT_SECONDS": "3",
    }
    command = [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]  # fmt: skip
    with http_server("uvicorn", command, port=port, env=env, start_seconds=START_SECONDS):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def asgi_url(sandbox_ready, sandbox_folders):
    with _uvicorn(sandbox_folders) as url:
        yield url


def test_uvicorn_streams_a_completion_frame_by_frame(asgi_url, demo_grant, researcher, api_key):
    client = openai.OpenAI(base_url=f"{asgi_url}/v1", api_key=api_key(researcher), max_retries=0, timeout=30)
    reference = client.completions.create(model="llama-demo-tiny", prompt="Once upon", max_tokens=40, temperature=0)

    arrivals, texts = [], []
    for chunk in client.completions.create(
        model="llama-demo-tiny", prompt="Once upon", max_tokens=40, temperature=0, stream=True
    ):
        arrivals.append(time.monotonic())
        texts.append(chunk.choices[0].text)

    assert "".join(texts) == reference.choices[0].text
    assert len(arrivals) > 2


def test_raw_frames_are_openais_server_sent_events(asgi_url, demo_grant, researcher, api_key):
    conn = http.client.HTTPConnection(asgi_url.removeprefix("http://"), timeout=30)
    conn.request(
        "POST", "/v1/completions",
        body=b'{"model": "llama-demo-tiny", "prompt": "Hi", "max_tokens": 5, "temperature": 0, "stream": true}',
        headers={"Authorization": f"Bearer {api_key(researcher)}", "Content-Type": "application/json"},
    )  # fmt: skip
    response = conn.getresponse()
    body = response.read().decode()

    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    assert response.getheader("X-Accel-Buffering") == "no"
    assert response.getheader("X-Sandbox-Job") == str(SandboxJob.objects.get().pk)
    frames = [frame for frame in body.split("\n\n") if frame]
    assert all(frame.startswith("data: ") for frame in frames) and "\nid:" not in body and not body.startswith("id:")
    assert frames[-1] == "data: [DONE]"


def test_a_client_hanging_up_on_uvicorn_cancels_its_job(asgi_url, demo_grant, researcher, api_key):
    client = openai.OpenAI(base_url=f"{asgi_url}/v1", api_key=api_key(researcher), max_retries=0, timeout=30)
    # 32 prompts of 1000 tokens: seconds of work even for the tiny demo model, which decodes one
    # prompt's 1000 tokens in under a second, sooner than a busy machine passes the hang-up on.
    stream = client.completions.create(
        model="llama-demo-tiny", prompt=["The capital of France is"] * 32, max_tokens=1000, temperature=0, stream=True
    )
    next(iter(stream))
    stream.close()

    deadline = time.monotonic() + 10
    while SandboxJob.objects.get().status != JobStatus.CANCELLED:
        assert time.monotonic() < deadline, SandboxJob.objects.get().status
        time.sleep(0.1)
