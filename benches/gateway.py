"""The download gateway under gunicorn on loopback, against references measured in the same run.

1. Link validation + redirect: GETs of the links of many researchers' grants (50) with S3
   storage (an S3 API server on loopback, moto's server mode), answered with a 302 to a presigned
   URL that the client does not follow. Every such request verifies the token, the grant, the
   license and the leak rule, counts a download (a guarded UPDATE) and logs the request:
   requests/s and p50/p99 latency, against the trivial view `/livez` of the same app, same
   server, same client. Goal: at least 0.5 of its requests/s.
2. Streaming: a 1 GiB file in local storage downloaded through the gateway (gunicorn sends it
   with sendfile) against reading the same file directly, both with curl (the client download.sh
   uses): `curl URL` against `curl file://PATH`, output discarded. Measured twice: cold, with the
   file's pages evicted from the page cache before each run (the regime of real weight files,
   16 GB shards that no web server keeps cached), and warm, from the page cache, where the direct
   read is a memory copy and the gateway pays for TCP over loopback.
   Goal: at least 0.8 of the direct MB/s. Where nginx is installed, nginx serving the same file as
   a static file (sendfile on) is measured in the same rounds: what any HTTP server gets here.
   Rounds read the file from every source back to back; the table shows the round with the
   median gateway ratio, and every transfer is listed after it, with each source's MB/s over all
   of them. Each cold transfer starts after a pause (--settle-seconds): on a virtual machine that
   hands freed memory back to its host, a read right after the host took it back runs at half
   speed or less, whoever reads (see the README).
3. Fingerprinted copies: the 1 GiB file is a torch.save checkpoint (float16 matrices), and the
   same bytes are published twice, once sent as published and once as a researcher's marked copy
   (issue 17: one page in sixteen of the weights made while the rest goes out by sendfile, new
   CRCs). Both are fetched cold in the same rounds. Goal: the marked copy at least 0.7 of the
   unmarked file's MiB/s.

    .venv/bin/python benches/gateway.py [--requests 3000] [--clients 4] [--workers 2xCPUs+1] [--threads 0]
        [--researchers 50] [--repeats 7] [--cold-repeats 9] [--settle-seconds 3] [--size-mib 1024]

Uses SQLite in a temporary folder, or a throwaway database on the server of DATABASE_URL when it is
set (the database it names is not touched). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from throwaway_database import database_url, drop_database  # noqa: E402 (benches/, beside this script)

GOAL_RPS_RATIO = 0.5
GOAL_MBPS_RATIO = 0.8
GOAL_MARKED_RATIO = 0.7
CHUNK = 1 << 20
BENCH_DB = "portal_bench_gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_checkpoint(path: Path, size_mib: int) -> str:
    """A torch.save checkpoint of float16 matrices as LLaMA's are (std 0.02), about size_mib MiB;
    returns its sha256."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    rows = 2048  # 2048 x 4096 float16: 16 MiB a tensor
    state = {f"layers.{i}.feed_forward.w1.weight": (torch.randn(rows, 4096, generator=generator) * 0.02).half()
             for i in range(max(1, size_mib // 16))}  # fmt: skip
    torch.save(state, path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def setup_portal(
    env: dict[str, str], big_file: Path, big_sha256: str, marked_file: Path, researchers: int
) -> tuple[list[str], str, str]:
    """Migrate, seed, and give `researchers` researchers an active grant with a bundle; returns the
    gateway paths of every researcher's small file (for the redirect test) and one researcher's
    1 GiB file sent as published and the same bytes as their marked copy (for streaming)."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    call_command("migrate", verbosity=0, interactive=False)
    from access.catalog.models import ModelVariant
    from access.catalog.selectors import license_current
    from access.distribution.bundles import bundle_create
    from access.distribution.fingerprints import weight_copy_prepare
    from access.distribution.models import WeightFile
    from access.distribution.tokens import link_path
    from access.grants.services import grant_accept_license, grant_create
    from access.seed import llama_release_seed
    from inference.llama.torch_zip import checkpoint_layout, layout_to_json
    from portal import roles
    from portal.services import user_create

    llama_release_seed()
    variant = ModelVariant.objects.get(slug="llama-demo-tiny")
    WeightFile.objects.create(variant=variant, name="params.json", storage_key="llama-demo-tiny/params.json",
                              size=2, sha256=hashlib.sha256(b"{}").hexdigest(), md5=hashlib.md5(b"{}").hexdigest())
    WeightFile.objects.create(variant=variant, name=big_file.name, storage_key=f"llama-demo-tiny/{big_file.name}",
                              size=big_file.stat().st_size, sha256=big_sha256, md5="0" * 32)
    # The same bytes with their layout: each researcher's link sends their own marked copy.
    WeightFile.objects.create(variant=variant, name=marked_file.name,
                              storage_key=f"llama-demo-tiny/{marked_file.name}", size=marked_file.stat().st_size,
                              sha256=big_sha256, md5="0" * 32, layout=layout_to_json(checkpoint_layout(marked_file)))
    reviewer = user_create(email="bench-reviewer@example.org", password=None, role=roles.REVIEWER,
                           email_verified=True)
    small_paths, big_path, marked_path = [], "", ""
    for index in range(researchers):
        with transaction.atomic():
            researcher = user_create(email=f"bench-researcher-{index}@example.org", password=None,
                                     email_verified=True)
            grant = grant_create(user=researcher, variant=variant, actor=reviewer, reason="gateway benchmark")
            grant = grant_accept_license(grant=grant, user=researcher,
                                         license_version=license_current(variant.family))
        bundle = bundle_create(grant=grant, user=researcher)
        links = {link.file.name: link_path(link) for link in bundle.links.select_related("file")}
        small_paths.append(links["params.json"])
        big_path, marked_path = links[big_file.name], links[marked_file.name]
    # What the Celery task does once links are made: the last researcher's copy's CRCs and checksums.
    weight_copy_prepare(bundle.links.get(file__name=marked_file.name).copy_id)
    return small_paths, big_path, marked_path


def start_gunicorn(env: dict[str, str], port: int, workers: int, threads: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
           "--log-level", "warning"]
    if threads:
        cmd += ["--worker-class", "gthread", "--threads", str(threads)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/livez")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not answer within 60 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def load(port: int, paths: list[str], expect: int, total: int, clients: int) -> tuple[float, list[float]]:
    """Send `total` GETs from `clients` threads, each going round `paths` from its own starting
    point; returns (requests/s, latencies in seconds)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = total // clients

    def client(offset: int):
        mine = []
        for index in range(per_client):
            path = paths[(offset + index) % len(paths)]
            start = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            conn.close()
            mine.append(time.perf_counter() - start)
            if response.status != expect:
                errors.append(f"{response.status} for {path}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(number * len(paths) // clients,)) for number in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} unexpected answers, first: {errors[0]}")
    return len(latencies) / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (no root needed), so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def curl_seconds(url: str, expected_size: int) -> float:
    """Seconds for curl to fetch url into /dev/null; fails unless it got the whole file with a 200."""
    start = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
                         capture_output=True, text=True, check=True).stdout.split()
    elapsed = time.perf_counter() - start
    if out[0] not in ("200", "000") or int(out[1]) != expected_size:  # file:// reports code 000
        raise SystemExit(f"curl {url}: status {out[0]}, {out[1]} of {expected_size} bytes")
    return elapsed


def start_nginx(tmp: Path, root: Path, port: int) -> subprocess.Popen | None:
    """nginx serving `root` as static files on loopback, or None where nginx is not installed."""
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if binary is None:
        return None
    conf = tmp / "nginx.conf"
    temp = " ".join(f"{kind}_temp_path {tmp / ('nginx-' + kind)};" for kind in ("client_body", "proxy", "fastcgi",
                                                                               "uwsgi", "scgi"))
    lines = [
        f"worker_processes 1; daemon off; pid {tmp / 'nginx.pid'}; error_log {tmp / 'nginx.err'};",
        # Started as root, nginx would serve as an unprivileged user who cannot read the bench's
        # private temporary folder: it serves as whoever runs the bench.
        f"user {getpass.getuser()};" if os.geteuid() == 0 else "",
        "events { worker_connections 64; }",
        f"http {{ access_log off; sendfile on; tcp_nopush on; {temp}",
        f"  server {{ listen 127.0.0.1:{port}; location / {{ root {root}; }} }} }}",
    ]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    print(f"nginx did not start (see {tmp / 'nginx.err'}): the static-file reference is skipped")
    stop(proc)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=4)
    # gunicorn's recommended worker count, 2 x cores + 1: sync workers overlap their database waits.
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    # 0: sync workers (docker-compose.yml's); more: gthread workers with that many threads each.
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--size-mib", type=int, default=1024)
    # Many researchers download at once: requests spread over their links, as in production,
    # rather than all queueing on one link's download counter.
    parser.add_argument("--researchers", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    # A virtual machine may hand the memory of evicted pages back to its host (free page
    # reporting, here once 1 GiB is free); a cold read that then refills the page cache waits for
    # the host to fault that memory back in, at half speed or less, whoever reads. A pause before
    # each eviction lets the previous transfer's pages be reported first, so the next read reuses
    # the pages it evicts and measures the disk and the server, not the host's memory. 0: no pause.
    parser.add_argument("--settle-seconds", type=float, default=3.0)
    parser.add_argument("--cold-repeats", type=int, default=9)
    opts = parser.parse_args()
    started = time.perf_counter()

    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    admin_url = None
    procs: list[subprocess.Popen] = []
    moto = None
    try:
        from moto.server import ThreadedMotoServer

        db_url, admin_url = database_url(tmp, BENCH_DB)
        storage_root = tmp / "storage"
        big_file = storage_root / "llama-demo-tiny" / "bench-1gib.pth"
        marked_file = big_file.with_name("bench-1gib-marked.pth")
        print(f"writing a {opts.size_mib} MiB checkpoint ...", flush=True)
        big_sha256 = write_checkpoint(big_file, opts.size_mib)
        os.link(big_file, marked_file)  # the same inode: evicting one evicts both
        (storage_root / "llama-demo-tiny" / "params.json").write_bytes(b"{}")

        s3_port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
        moto.start()
        common = {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "false",
            "PORTAL_VAR_DIR": str(tmp),
            "DATABASE_URL": db_url,
            "DATABASE_CONN_MAX_AGE": "60",  # persistent connections, as in production
            "PORTAL_STORAGE_ROOT": str(storage_root),
            # Every request here is a first download from one network: lift both limits.
            "DOWNLOAD_LINK_MAX_DOWNLOADS": str(10**9),
            "DOWNLOAD_LEAK_MAX_NETWORKS": str(10**6),
        }
        s3 = {
            "PORTAL_STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
            "S3_BUCKET": "bench-weights", "S3_ACCESS_KEY_ID": "bench", "S3_SECRET_ACCESS_KEY": "bench-secret",
        }
        import boto3

        boto3.client("s3", endpoint_url=s3["S3_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench-secret").create_bucket(
            Bucket="bench-weights")
        small_paths, big_path, marked_path = setup_portal(
            {**common, "PORTAL_STORAGE_BACKEND": "local"}, big_file, big_sha256, marked_file, opts.researchers
        )

        # 1. Validation + redirect (S3) against /livez, same server.
        port = free_port()
        procs.append(start_gunicorn({**common, **s3}, port, opts.workers, opts.threads))
        load(port, ["/livez"], 200, 100, opts.clients)  # warm-up: imports, connections
        load(port, small_paths, 302, 100, opts.clients)
        # Rounds of the two views back to back; each round's ratio compares them under the same
        # conditions (a shared machine's speed drifts from minute to minute), and the round with
        # the median ratio is reported.
        rounds = []
        for _ in range(opts.repeats):
            trivial = load(port, ["/livez"], 200, opts.requests, opts.clients)
            gateway = load(port, small_paths, 302, opts.requests, opts.clients)
            rounds.append((gateway[0] / trivial[0], trivial, gateway))
        rounds.sort(key=lambda r: r[0])
        rps_ratios = [r[0] for r in rounds]
        _, (trivial_rps, trivial_lat), (gateway_rps, gateway_lat) = rounds[len(rounds) // 2]
        stop(procs.pop())

        # 2. Streaming a 1 GiB file (local storage) against reading it directly.
        port = free_port()
        procs.append(start_gunicorn({**common, "PORTAL_STORAGE_BACKEND": "local"}, port, opts.workers, opts.threads))
        size = big_file.stat().st_size
        sources = {"direct": big_file.as_uri(), "gateway": f"http://127.0.0.1:{port}{big_path}",
                   "marked": f"http://127.0.0.1:{port}{marked_path}"}
        nginx_port = free_port()
        nginx = start_nginx(tmp, storage_root, nginx_port)
        if nginx is not None:
            procs.append(nginx)
            sources["nginx"] = f"http://127.0.0.1:{nginx_port}/{big_file.relative_to(storage_root).as_posix()}"
        timings, stream_ratios, transfer_speeds, total_seconds = {}, {}, {}, {}
        for regime in ("cold", "warm"):
            rounds_seconds = []  # each round's seconds per source, run back to back
            for number in range(opts.cold_repeats if regime == "cold" else opts.repeats):
                seconds = {}
                # The order turns each round, so that every source reads first, second and last alike.
                shift = number % len(sources)
                order = list(sources.items())[shift:] + list(sources.items())[:shift]
                for name, url in order:
                    if regime == "cold":
                        time.sleep(opts.settle_seconds)
                        evict(big_file)  # and read at once: see --settle-seconds
                    else:
                        curl_seconds(sources["direct"], size)  # into the page cache
                    seconds[name] = curl_seconds(url, size)
                rounds_seconds.append(seconds)
            rounds_seconds.sort(key=lambda r: r["direct"] / r["gateway"])
            stream_ratios[regime] = [r["direct"] / r["gateway"] for r in rounds_seconds]
            if "nginx" in sources:
                stream_ratios[regime, "nginx"] = sorted(r["direct"] / r["nginx"] for r in rounds_seconds)
            marked_rounds = sorted(rounds_seconds, key=lambda r: r["gateway"] / r["marked"])
            stream_ratios[regime, "marked"] = [r["gateway"] / r["marked"] for r in marked_rounds]
            timings[regime, "marked-round"] = marked_rounds[len(marked_rounds) // 2]
            for name, value in rounds_seconds[len(rounds_seconds) // 2].items():
                timings[regime, name] = value
            for name in sources:
                transfer_speeds[regime, name] = sorted(size / (1 << 20) / r[name] for r in rounds_seconds)
                total_seconds[regime, name] = sum(r[name] for r in rounds_seconds)
        if nginx is not None:
            stop(procs.pop())
        stop(procs.pop())
    finally:
        for proc in procs:
            stop(proc)
        if moto is not None:
            moto.stop()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        drop_database(admin_url, BENCH_DB)
        shutil.rmtree(tmp, ignore_errors=True)

    mib = size / (1 << 20)
    print()
    server = f"{opts.workers} gthread workers of {opts.threads} threads" if opts.threads else f"{opts.workers} sync workers"
    print(f"gunicorn, {server}; {opts.clients} client threads, {opts.requests} requests per "
          f"round over {opts.researchers} researchers' links; database {db_url.split(':')[0]}; streaming with curl. "
          f"{opts.repeats} rounds of requests, each measuring both views back to back, the round with the median "
          f"ratio shown; {opts.cold_repeats} cold and {opts.repeats} warm rounds of streaming, each reading the file "
          "from every source back to back, the round with the median gateway ratio shown (its nginx row is from the "
          f"same round); {opts.settle_seconds:g} s pause before each cold transfer.")
    print()
    print("| what | requests/s | p50 ms | p99 ms | MiB/s | ratio | goal |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print(f"| `/livez` (reference) | {trivial_rps:,.0f} | {percentile(trivial_lat, .5) * 1e3:.1f} | "
          f"{percentile(trivial_lat, .99) * 1e3:.1f} | | | |")
    rps_ratio = gateway_rps / trivial_rps
    print(f"| gateway link → 302 to S3 | {gateway_rps:,.0f} | {percentile(gateway_lat, .5) * 1e3:.1f} | "
          f"{percentile(gateway_lat, .99) * 1e3:.1f} | | {rps_ratio:.2f} | >= {GOAL_RPS_RATIO}: "
          f"{'met' if rps_ratio >= GOAL_RPS_RATIO else 'NOT met'} |")
    for regime in ("cold", "warm"):
        direct_mbps = mib / timings[regime, "direct"]
        gateway_mbps = mib / timings[regime, "gateway"]
        ratio = gateway_mbps / direct_mbps
        goal = f">= {GOAL_MBPS_RATIO}: {'met' if ratio >= GOAL_MBPS_RATIO else 'NOT met'}" if regime == "cold" else ""
        print(f"| {mib:,.0f} MiB file read directly, {regime} (reference) | | | | {direct_mbps:,.0f} | | |")
        if (regime, "nginx") in timings:
            nginx_mbps = mib / timings[regime, "nginx"]
            print(f"| {mib:,.0f} MiB from nginx (static file), {regime} | | | | {nginx_mbps:,.0f} | "
                  f"{nginx_mbps / direct_mbps:.2f} | |")
        print(f"| {mib:,.0f} MiB through the gateway, {regime} | | | | {gateway_mbps:,.0f} | {ratio:.2f} | {goal} |")
        middle = timings[regime, "marked-round"]  # the round with the median marked / unmarked ratio
        marked_ratio = middle["gateway"] / middle["marked"]
        met = "met" if marked_ratio >= GOAL_MARKED_RATIO else "NOT met"
        marked_goal = f">= {GOAL_MARKED_RATIO} of unmarked: {met}" if regime == "cold" else ""
        print(f"| {mib:,.0f} MiB unmarked / marked copy through the gateway, {regime} (that round) | | | | "
              f"{mib / middle['gateway']:,.0f} / {mib / middle['marked']:,.0f} | {marked_ratio:.2f} | {marked_goal} |")
    if (regime, "nginx") not in timings:
        print("\n(nginx is not installed: the static-file reference was skipped)")
    print()
    print("ratio of every round, lowest first:")
    print(f"  gateway / livez requests/s: {', '.join(f'{r:.2f}' for r in rps_ratios)}")
    for regime in ("cold", "warm"):
        print(f"  streaming, {regime}: {', '.join(f'{r:.2f}' for r in stream_ratios[regime])}")
        if (regime, "nginx") in stream_ratios:
            print(f"  nginx, {regime}: {', '.join(f'{r:.2f}' for r in stream_ratios[regime, 'nginx'])}")
        print(f"  marked / unmarked, {regime}: {', '.join(f'{r:.2f}' for r in stream_ratios[regime, 'marked'])}")
    print("MiB/s of every transfer, slowest first, and over all of them (total bytes over total seconds):")
    for (regime, name), speeds in transfer_speeds.items():
        overall = f"{len(speeds) * mib / total_seconds[regime, name]:,.0f}"
        if name != "direct":
            overall += f", {total_seconds[regime, 'direct'] / total_seconds[regime, name]:.2f} of direct"
        print(f"  {name}, {regime}: {', '.join(f'{v:,.0f}' for v in speeds)}; overall {overall}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
