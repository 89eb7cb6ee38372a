"""Two test "hosts" on this machine: network namespaces joined by a veth pair, nothing else (imported by the
tests by this module's own name). Each namespace holds only its loopback and its end of the pair, addressed in
198.18.0.0/30 (RFC 2544's benchmarking range), with no default route and IPv6 off: DDS in there can reach the
other namespace and nothing else. ``RtpsSniffer`` watches the host's own interfaces for the test's DDS traffic.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

ADDRESSES = ("198.18.0.1", "198.18.0.2")
ETH_P_IP = 0x0800


class NamespacePair:
    """Namespaces ``<tag>a`` (the camera host) and ``<tag>b`` (the node host); ``close()`` removes them."""

    def __init__(self, tag: str) -> None:
        self.names = (f"{tag}a", f"{tag}b")
        self.links = (f"{tag}va", f"{tag}vb")
        self._made: list[str] = []
        try:
            for name in self.names:
                _ip("netns", "add", name)
                self._made.append(name)
            _ip("link", "add", self.links[0], "netns", self.names[0], "type", "veth",
                "peer", "name", self.links[1], "netns", self.names[1])
            for name, link, address in zip(self.names, self.links, ADDRESSES, strict=True):
                _ip("-n", name, "link", "set", "lo", "up")
                _ip("-n", name, "addr", "add", f"{address}/30", "dev", link)
                _ip("-n", name, "link", "set", link, "up")
                self.run(name, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        except BaseException:
            self.close()
            raise

    def prefix(self, name: str) -> list[str]:
        """The command prefix that runs a program inside namespace ``name``."""
        return ["ip", "netns", "exec", name]

    def run(self, name: str, cmd: list[str]) -> str:
        return subprocess.run(self.prefix(name) + cmd, check=True, capture_output=True, text=True).stdout

    def describe(self, name: str) -> tuple[list[str], list[str]]:
        """(interface names, routes) inside namespace ``name``."""
        links = [line.split(":")[1].strip().split("@")[0] for line in _ip("-n", name, "-o", "link").splitlines()]
        routes = [line.strip() for line in _ip("-n", name, "route", "show", "table", "all").splitlines()]
        return links, routes

    def close(self) -> None:
        for name in self._made:  # removing a namespace removes its end of the pair, and so the pair
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self._made = []


def _ip(*args: str) -> str:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {out.stderr.strip() or out.returncode}")
    return out.stdout


def cannot_make_namespaces() -> str | None:
    """Why this machine cannot make network namespaces here (None if it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        return "iproute2's ip is not installed"
    probe = f"csprobe{os.getpid() % 100000}"
    try:
        _ip("netns", "add", probe)
    except OSError as exc:
        return f"cannot make a network namespace: {exc}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


class RtpsSniffer:
    """Counts IPv4/UDP packets carrying RTPS (DDS) or bound for ``ports`` on the host's own interfaces other
    than loopback, while running (an AF_PACKET socket in this, the host's, network namespace)."""

    def __init__(self, ports: range) -> None:
        self.ports = ports
        self.seen: list[str] = []
        self.interfaces = [p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo"]
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                packet, address = self._sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            if address[0] == "lo" or len(packet) < 28 or packet[9] != socket.IPPROTO_UDP:
                continue
            ihl = (packet[0] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", packet[ihl : ihl + 4])
            payload = packet[ihl + 8 : ihl + 12]
            if payload == b"RTPS" or dport in self.ports or sport in self.ports:
                src, dst = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
                self.seen.append(f"{address[0]}: {src}:{sport} -> {dst}:{dport}")

    def stop(self) -> list[str]:
        """Stop watching; the packets seen."""
        self._stop.set()
        self._thread.join(5.0)
        self._sock.close()
        return self.seen


def domain_ports(domain: int) -> range:
    """The UDP ports DDS uses for ``domain`` (RTPS port mapping: 7400 + 250 * domain + offsets < 250)."""
    return range(7400 + 250 * domain, 7400 + 250 * (domain + 1))
