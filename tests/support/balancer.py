"""nginx in front of ``tollway serve`` processes, run from the installed binary with the configuration that
deploy/compose.yaml ships (deploy/nginx.conf), the instances' addresses put in place of the containers' names."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONF = ROOT / "deploy" / "nginx.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def site_conf(upstreams: list[str], port: int) -> str:
    """deploy/nginx.conf with one ``server`` line per instance address (each keeps the shipped options) and the
    listener on 127.0.0.1:``port``."""
    shipped = SHIPPED_CONF.read_text()
    lines = re.findall(r"^( *)server tollway-\d+:8080( [^;]*)?;$", shipped, flags=re.M)
    assert lines, "deploy/nginx.conf has no server tollway-N:8080 lines"
    indent, options = lines[0]
    servers = "".join(f"{indent}server {address}{options};\n" for address in upstreams)
    conf = re.sub(r"(^ *server tollway-\d+:8080[^;]*;\n)+", lambda _m: servers, shipped, count=1, flags=re.M)
    conf, listens = re.subn(r"^( *)listen 8080;", rf"\1listen 127.0.0.1:{port};", conf, flags=re.M)
    assert listens == 1, "deploy/nginx.conf should listen on 8080 once"
    return conf


class Nginx:
    """One nginx process (no master, no user switch) serving ``site_conf`` from a directory of its own."""

    def __init__(self, work: Path, upstreams: list[str]) -> None:
        binary = nginx_binary()
        assert binary is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        (work / "site.conf").write_text(site_conf(upstreams, self.port))
        temp_paths = "".join(
            f"  {directive} {work / name};\n"
            for directive, name in (
                ("client_body_temp_path", "body"),
                ("proxy_temp_path", "proxy"),
                ("fastcgi_temp_path", "fastcgi"),
                ("uwsgi_temp_path", "uwsgi"),
                ("scgi_temp_path", "scgi"),
            )
        )
        (work / "nginx.conf").write_text(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {work / 'nginx.pid'};\nerror_log {work / 'error.log'} warn;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n  access_log off;\n{temp_paths}  include {work / 'site.conf'};\n}}\n"
        )
        self.error_log = work / "error.log"
        self.proc = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf")])
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.errors()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen: {self.errors()}")
            time.sleep(0.05)

    def errors(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
