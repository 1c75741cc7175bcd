"""The download count under concurrency: one guarded UPDATE per first request, so a link
can never be used more often than it allows, however many clients start at once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client

from access.distribution.models import DownloadEvent, DownloadLink
from access.distribution.tokens import link_path

CLIENTS = 50


@pytest.fixture
def get_all_at_once(body_of):
    """get_all_at_once(path, addresses): GET path once from each address, every thread released at the
    same moment; the (status, body) of each response."""

    def get(path: str, addresses: list[str]) -> list[tuple[int, bytes]]:
        start = threading.Barrier(len(addresses))
        results: list[tuple[int, bytes]] = []
        errors: list[BaseException] = []

        def request(address: str) -> None:
            try:
                start.wait(timeout=30)
                response = Client().get(path, REMOTE_ADDR=address)
                results.append((response.status_code, body_of(response)))
            except BaseException as exc:  # reported below, with the thread's traceback lost otherwise
                errors.append(exc)
            finally:
                connection.close()  # each thread has its own connection; leave none open

        threads = [threading.Thread(target=request, args=(address,)) for address in addresses]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        return results

    return get


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_first_requests_get_exactly_the_five_downloads_left(
    settings, published_demo_weights, researcher, reviewer, bundle_make, get_all_at_once
):
    settings.DOWNLOAD_LINK_MAX_DOWNLOADS = 5
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = CLIENTS  # every client has its own network here
    bundle = bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)
    link = bundle.links.select_related("file").get(file__name="params.json")

    results = get_all_at_once(link_path(link), [f"10.0.{n}.1" for n in range(CLIENTS)])

    assert Counter(status for status, _ in results) == {200: 5, 403: 45}
    whole = (published_demo_weights[1] / "params.json").read_bytes()
    assert [body for status, body in results if status == 200] == [whole] * 5
    link.refresh_from_db()
    assert link.downloads_used == 5
    assert DownloadEvent.objects.filter(link=link, counted=True).count() == 5
    assert DownloadEvent.objects.filter(link=link, outcome="exhausted", status_code=403).count() == 45


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_from_one_known_network_get_exactly_the_downloads_left(
    settings, published_demo_weights, researcher, reviewer, bundle_make, get_all_at_once
):
    # From a network that already used the bundle, PostgreSQL takes each download in the same
    # statement that loads the link: that path must be as race-free as the two-step one.
    settings.DOWNLOAD_LINK_MAX_DOWNLOADS = 5
    bundle = bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)
    known = Client().get(link_path(bundle.links.get(file__name="tokenizer.model")), REMOTE_ADDR="10.0.0.1")
    assert known.status_code == 200
    link = bundle.links.select_related("file").get(file__name="params.json")

    results = get_all_at_once(link_path(link), [f"10.0.0.{n + 2}" for n in range(CLIENTS)])

    assert Counter(status for status, _ in results) == {200: 5, 403: CLIENTS - 5}
    link.refresh_from_db()
    assert link.downloads_used == 5
    assert DownloadEvent.objects.filter(link=link, counted=True).count() == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_new_networks_gets_no_further_than_the_leak_limit(
    settings, published_demo_weights, researcher, reviewer, bundle_make, get_all_at_once
):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 3
    bundle = bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)
    link = bundle.links.select_related("file").get(file__name="params.json")
    DownloadLink.objects.filter(pk=link.pk).update(max_downloads=CLIENTS)  # this test is about networks

    results = get_all_at_once(link_path(link), [f"10.{n}.0.1" for n in range(CLIENTS)])

    assert Counter(status for status, _ in results) == {200: 3, 403: CLIENTS - 3}
    bundle.refresh_from_db()
    assert bundle.suspended_at is not None
    assert DownloadEvent.objects.filter(link=link, counted=True).count() == 3
