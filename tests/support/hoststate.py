"""What "the host" is, for a test that must prove a kubelet node (tests.support.kubelet) left it as it found it:
every sysctl, the firewall rules, the host's mounts, every cgroup, and the paths a kubelet or containerd writes
by default. :func:`host_state` takes a snapshot; :meth:`HostState.differences` compares two.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RUNTIME_PATHS", "HostState", "cgroup_dirs", "host_state"]

#: Paths a kubelet or containerd writes by default; none may appear on (or vanish from) the host.
RUNTIME_PATHS = (
    "/var/lib/kubelet", "/var/lib/containerd", "/var/log/pods", "/var/log/containers", "/run/containerd",
    "/run/runc", "/etc/cni", "/opt/cni", "/opt/containerd", "/etc/kubernetes", "/var/lib/cni",
)
#: Sysctls that change by themselves (counters, random values): left out of the before/after comparison.
_VOLATILE_SYSCTLS = re.compile(
    r"^(fs/(dentry-state|file-nr|inode-nr|inode-state|aio-nr|quota/.*|binfmt_misc/.*)"
    r"|kernel/(random/.*|ns_last_pid|pty/nr|sched_domain/.*)"
    r"|net/netfilter/nf_conntrack_count|vm/stat_refresh|vm/drop_caches)$"
)
#: Other container engines on a developer's machine (podman, docker) mount, unmount and create cgroups and network
#: interfaces of their own while a test runs; the node never uses their paths or names, so their traces are not
#: compared (CI runs nothing else beside the suite).
_FOREIGN = re.compile(r"/var/lib/containers/|/run/containers/|/var/lib/docker/|/run/docker|libpod|machine\.slice"
                      r"|^sysctl net/\w+/(conf|neigh)/(veth|podman|cni|docker|br-)")


@dataclass(frozen=True)
class HostState:
    """What a node must leave as it found it."""

    sysctls: dict[str, str]
    """Every readable /proc/sys value except the counters in ``_VOLATILE_SYSCTLS``."""
    firewall: dict[str, str]
    """``iptables-save``/``ip6tables-save``/``nft list ruleset`` output (counters zeroed), for those present."""
    mounts: tuple[str, ...]
    """This (the host's) mount namespace, from /proc/self/mountinfo."""
    cgroups: frozenset[str]
    """Every directory under /sys/fs/cgroup."""
    runtime_paths: dict[str, bool]
    """Whether each of :data:`RUNTIME_PATHS` exists."""

    def differences(self, after: HostState) -> list[str]:
        """Human-readable differences from ``self`` (before) to ``after``, except other container engines'
        (``_FOREIGN``); empty when equal."""
        return [d for d in self._all_differences(after) if not _FOREIGN.search(d)]

    def _all_differences(self, after: HostState) -> list[str]:
        found: list[str] = []
        for key in sorted(self.sysctls.keys() | after.sysctls.keys()):
            if self.sysctls.get(key) != after.sysctls.get(key):
                found.append(f"sysctl {key}: {self.sysctls.get(key)!r} -> {after.sysctls.get(key)!r}")
        for tool in sorted(self.firewall.keys() | after.firewall.keys()):
            if self.firewall.get(tool) != after.firewall.get(tool):
                found.append(f"{tool} output changed:\n{self.firewall.get(tool)}\n->\n{after.firewall.get(tool)}")
        before_mounts, after_mounts = set(self.mounts), set(after.mounts)
        found += [f"mount gone: {m}" for m in sorted(before_mounts - after_mounts)]
        found += [f"mount added: {m}" for m in sorted(after_mounts - before_mounts)]
        found += [f"cgroup gone: {c}" for c in sorted(self.cgroups - after.cgroups)]
        found += [f"cgroup added: {c}" for c in sorted(after.cgroups - self.cgroups)]
        for path, existed in self.runtime_paths.items():
            if after.runtime_paths.get(path) != existed:
                found.append(f"{path}: {'existed' if existed else 'absent'} before, "
                             f"{'exists' if after.runtime_paths.get(path) else 'absent'} after")
        return found


def _read_sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    root = Path("/proc/sys")
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            key = str(path.relative_to(root))
            if _VOLATILE_SYSCTLS.match(key):
                continue
            try:
                values[key] = path.read_text().strip()
            except OSError:  # write-only (vm/compact_memory) or refusing reads (stable_secret)
                continue
    return values


def _firewall() -> dict[str, str]:
    rules: dict[str, str] = {}
    search = "/usr/sbin:/sbin:/usr/bin:/bin"
    for command in (["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"]):
        binary = shutil.which(command[0], path=search)
        if binary is None:
            continue
        proc = subprocess.run([binary, *command[1:]], capture_output=True, text=True, check=False)
        text = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("#"))
        rules[command[0]] = re.sub(r"\[\d+:\d+\]", "[0:0]", text) + (f"\n(exit {proc.returncode})"
                                                                     if proc.returncode else "")
    return rules


def cgroup_dirs() -> frozenset[str]:
    found: set[str] = set()
    for directory, subdirs, _ in os.walk("/sys/fs/cgroup"):
        found.update(os.path.join(directory, d) for d in subdirs)
    return frozenset(found)


def host_state() -> HostState:
    """Snapshot of :class:`HostState` now (from the calling process's namespaces: the host's)."""
    return HostState(
        sysctls=_read_sysctls(),
        firewall=_firewall(),
        mounts=tuple(Path("/proc/self/mountinfo").read_text().splitlines()),
        cgroups=cgroup_dirs(),
        runtime_paths={p: os.path.lexists(p) for p in RUNTIME_PATHS},
    )
