"""W&B with an API key but no reachable server: the job logs offline, with a message, instead of waiting
for W&B's own timeout and failing. Nothing here contacts a host outside this machine: the W&B server is
always a local address (a closed port, a silent listener, or a small HTTP server started by the test)."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import BASE_TINY, REPO

from microaction.utils import config as config_utils

FAKE_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 characters, the shape of a W&B API key


@pytest.fixture
def closed_port():
    """A local port bound but not listening: a connection to it is refused at once, and nothing else
    can start listening on it while the test runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def silent_port():
    """A local port that accepts connections (the kernel completes them) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def refusing_server():
    """A local HTTP server that answers every request with 401 Unauthorized (a server that is there
    but will not start the run): returns its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"{}")

        do_GET = do_POST = do_HEAD = do_PUT = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _env(home: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MA52_ROOT"))}
    env.update(HYDRA_FULL_ERROR="0", HOME=str(home), WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=base_url)
    return env


# --- the check itself ------------------------------------------------------------------------------


def test_closed_port_is_unreachable_at_once(closed_port):
    start = time.monotonic()
    reason = config_utils.wandb_unreachable(f"http://127.0.0.1:{closed_port}", timeout=5)
    assert reason is not None and "refused" in reason.lower(), reason
    assert time.monotonic() - start < 5  # refused, not timed out


def test_server_that_never_answers_is_unreachable_after_the_timeout(silent_port):
    reason = config_utils.wandb_unreachable(f"http://127.0.0.1:{silent_port}", timeout=0.5)
    assert reason == "no answer within 0.5 s"


def test_server_that_answers_is_reachable_whatever_the_status(refusing_server):
    assert config_utils.wandb_unreachable(refusing_server, timeout=5) is None


def test_netrc_entry_for_the_configured_server_counts_as_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    assert not config_utils.wandb_has_credentials()
    netrc.write_text(f"machine 127.0.0.1:8 login user password {FAKE_KEY}\n")
    assert not config_utils.wandb_has_credentials()  # another server's key
    netrc.write_text(f"machine 127.0.0.1:9 login user password {FAKE_KEY}\n")
    assert config_utils.wandb_has_credentials()


# --- a real training run -------------------------------------------------------------------------------


def test_wandb_key_without_network_trains_offline_with_a_message(tiny_root, tmp_path, closed_port):
    """`logger=wandb` with an API key set and the W&B server unreachable: the run says so, logs offline and
    finishes (without the check, W&B waits about 90 s for the server and then the job fails)."""
    run_dir = tmp_path / "run"
    url = f"http://127.0.0.1:{closed_port}"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *(a for a in BASE_TINY if not a.startswith("logger=")),
         f"data.root={tiny_root}", "test=false", "logger=wandb", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=_env(tmp_path, url), capture_output=True, text=True, timeout=600,
    )
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert f"W&B: the server {url} cannot be reached" in out, out[-5000:]
    assert "logging offline" in out
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert not list((run_dir / "wandb").glob("run-*"))  # no online run was attempted
    assert (run_dir / "metrics.json").is_file()
    print(f"train run with W&B unreachable: {elapsed:.1f} s wall")  # reported with -s; not asserted


def test_online_run_that_cannot_start_falls_back_to_offline(tmp_path, refusing_server):
    """The server answers, so the run starts online, but W&B refuses it: the logger W&B cannot start is
    replaced by an offline one, with a message, and logging goes on."""
    script = f"""
import sys
from omegaconf import OmegaConf
from microaction.utils.config import instantiate_loggers
section = OmegaConf.load({str(REPO / "conf" / "logger" / "wandb.yaml")!r})
section.wandb.tags = ["test"]
section.wandb.job_type = "train"
section.wandb.save_dir = {str(tmp_path)!r}
(logger,) = instantiate_loggers(section)
logger.log_metrics({{"x": 1.0}}, step=0)
print("OFFLINE" if logger._offline else "ONLINE", logger.experiment.settings.mode)
import wandb
wandb.finish()
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(tmp_path, refusing_server),
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "W&B: the online run could not start" in out, out[-5000:]
    assert "OFFLINE offline" in proc.stdout, out[-5000:]
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
