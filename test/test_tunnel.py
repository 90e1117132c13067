"""ssh tunnels against a real OpenSSH server on loopback: forward and reverse carry the
child's link, an unknown host key is refused and reported, a killed ssh comes back."""
import os
import signal

import psutil
import pytest

from orbit_procs import Orbit, wait_for
from radical_orbit.tunnel import SSHTarget, Tunnel, parse_via, reverse_argv
from radical_orbit.tunnel.child import bridge_hostport, free_port
from sshd import SSHServer, require_sshd


@pytest.fixture(scope="module")
def orbit(tmp_path_factory):
    o = Orbit(str(tmp_path_factory.mktemp("tunnel") / "home"), tls=True)
    o.start_bridge()
    yield o
    o.stop()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    require_sshd()
    server = SSHServer(str(tmp_path_factory.mktemp("sshd"))).start()
    yield server
    server.stop()


def known_hosts(tmp_path, sshd=None) -> str:
    path = str(tmp_path / "known_hosts")
    open(path, "w").close()
    os.chmod(path, 0o600)
    if sshd is not None:
        sshd.trust_in(path)
    return path


def ssh_children(proc):
    try:
        return [c for c in psutil.Process(proc.pid).children(recursive=True) if c.name() == "ssh"]
    except psutil.NoSuchProcess:
        return []


def dials(pid: int, port: int) -> bool:
    """The process has an established TCP connection to 127.0.0.1:port."""
    return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
               for c in getattr(psutil.Process(pid), "net_connections", psutil.Process(pid).connections)("tcp"))


def registrations(proc) -> int:
    return proc.output().count("registered with")


def reverse_tunnel(orbit, sshd, kh, port) -> Tunnel:
    host, bport = bridge_hostport(orbit.url)
    return Tunnel("reverse-test", reverse_argv(parse_via(sshd.via), port, host, bport,
                                               known_hosts=kh, identity=sshd.user_key),
                  backoff_initial=0.2, backoff_max=1.0, up_after=1.0)


def test_parse_via_takes_user_host_port():
    assert parse_via("me@login1:2222") == SSHTarget("me", "login1", 2222)
    assert parse_via("login1") == SSHTarget(None, "login1", None)
    with pytest.raises(ValueError, match=r"\[user@\]host\[:port\]"):
        parse_via("me@login1:99999")
    for bad in ("-v", "-oProxyCommand", "me@-login1", "-", ".-x"):
        with pytest.raises(ValueError):
            parse_via(bad)
    assert parse_via("login-1.example.org") == SSHTarget(None, "login-1.example.org", None)


def test_forward_tunnel_carries_the_link_and_survives_killing_ssh(orbit, sshd, tmp_path):
    kh = known_hosts(tmp_path, sshd)
    ep = orbit.start_endpoint("fwd", "-p", "sysinfo", "--tunnel", "forward", "--tunnel-via", sshd.via,
                              "--tunnel-identity", sshd.user_key, timeout=40,
                              RADICAL_ORBIT_KNOWN_HOSTS=kh)
    first = wait_for(lambda: ssh_children(ep), 10, "the endpoint's ssh")[0]
    argv = first.cmdline()
    local_port = int(argv[argv.index("-L") + 1].split(":")[1])
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
    assert "ExitOnForwardFailure=yes" in argv and "UserKnownHostsFile=%s" % kh in argv
    wait_for(lambda: dials(ep.pid, local_port), 10, "the link to go through the tunnel")
    assert registrations(ep) == 1
    first.send_signal(signal.SIGKILL)
    wait_for(lambda: [c for c in ssh_children(ep) if c.pid != first.pid], 20, "a new ssh")
    wait_for(lambda: registrations(ep) >= 2, 40, "the endpoint to register again")
    orbit.wait_listed("fwd", 20, ep)
    assert orbit.get("fwd/sysinfo/host_role").status_code == 200
    assert "tunnel forward-%s down" % sshd.via in ep.output()
    assert ep.stop() == 0
    assert not ssh_children(ep)


def test_reverse_tunnel_carries_the_link_and_comes_back_after_ssh_is_killed(orbit, sshd, tmp_path):
    kh = known_hosts(tmp_path, sshd)
    port = free_port()
    tunnel = reverse_tunnel(orbit, sshd, kh, port).start()
    try:
        assert tunnel.wait_up(20), tunnel.status()
        ep = orbit.start_endpoint("rev", "-p", "sysinfo", "--tunnel", "reverse", "--tunnel-port",
                                  str(port), timeout=40)
        wait_for(lambda: dials(ep.pid, port), 10, "the link to go through the tunnel")
        tunnel.proc.kill()
        wait_for(lambda: tunnel.restarts >= 1 and tunnel.state == "up", 30, "the tunnel back")
        wait_for(lambda: registrations(ep) >= 2, 40, "the endpoint to register again")
        orbit.wait_listed("rev", 20, ep)
        assert ep.stop() == 0
    finally:
        tunnel.stop()
    assert tunnel.state == "stopped" and tunnel.status()["pid"] is None


def test_an_unknown_host_key_is_refused_and_reported_failed(orbit, sshd, tmp_path):
    kh = known_hosts(tmp_path)              # empty: the server's key is unknown
    failures = []
    tunnel = reverse_tunnel(orbit, sshd, kh, free_port())
    tunnel._on_fatal = failures.append
    tunnel.start()
    try:
        wait_for(lambda: tunnel.state == "failed", 20, "the tunnel to fail")
    finally:
        tunnel.stop()
    assert "Host key verification failed" in tunnel.reason and failures
    assert tunnel.restarts == 0 and os.path.getsize(kh) == 0     # nothing learnt blindly
    ep = orbit.start_endpoint("fwdbad", "-p", "sysinfo", "--tunnel", "forward", "--tunnel-via",
                              sshd.via, "--tunnel-identity", sshd.user_key, wait=False,
                              RADICAL_ORBIT_KNOWN_HOSTS=kh)
    assert ep.wait(30) == 1
    last = ep.output().strip().splitlines()[-1]
    assert "ssh tunnel" in last and "Host key verification failed" in last, ep.output()
