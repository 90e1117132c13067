"""A real OpenSSH server for the tunnel tests: started on a loopback port with a host
key and a user key made here, for this user only; always stopped."""
import os
import shutil
import socket
import subprocess
import time
from typing import Optional

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def require_sshd() -> None:
    if not (os.access(SSHD, os.X_OK) and shutil.which("ssh") and os.access(SSH_KEYGEN, os.X_OK)):
        pytest.skip("no OpenSSH server and client here (apt-get install openssh-server openssh-client)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: str) -> str:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "orbit-test", "-f", path],
                   check=True, capture_output=True, timeout=30)
    return path


class SSHServer:
    """``sshd -D -e`` on 127.0.0.1:<free port>; ``user_key`` logs in as this user,
    ``known_hosts_line`` is the line that makes a client trust it."""

    def __init__(self, directory: str):
        require_sshd()
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.host_key = keygen(os.path.join(directory, "host_key"))
        self.user_key = keygen(os.path.join(directory, "user_key"))
        self.port = _free_port()
        self.user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
        shutil.copyfile(self.user_key + ".pub", os.path.join(directory, "authorized_keys"))
        self.config = os.path.join(directory, "sshd_config")
        with open(self.config, "w") as f:
            f.write("\n".join([
                "Port %d" % self.port, "ListenAddress 127.0.0.1",
                "HostKey %s" % self.host_key, "PidFile %s" % os.path.join(directory, "sshd.pid"),
                "AuthorizedKeysFile %s" % os.path.join(directory, "authorized_keys"),
                "StrictModes no", "UsePAM no", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes", "GatewayPorts no", "AllowUsers %s" % self.user,
                "LogLevel VERBOSE", ""]))
        self.log_path = os.path.join(directory, "sshd.log")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def known_hosts_line(self) -> str:
        with open(self.host_key + ".pub") as f:
            kind, key = f.read().split()[:2]
        return "[127.0.0.1]:%d %s %s\n" % (self.port, kind, key)

    @property
    def via(self) -> str:
        return "%s@127.0.0.1:%d" % (self.user, self.port)

    def trust_in(self, known_hosts: str) -> None:
        with open(known_hosts, "a") as f:
            f.write(self.known_hosts_line)
        os.chmod(known_hosts, 0o600)

    def start(self) -> "SSHServer":
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)    # privilege separation dir
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 20
        while b"Server listening" not in open(self.log_path, "rb").read():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("sshd did not start:\n" + self.output())
            time.sleep(0.05)
        return self

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
