"""Configuration of every component, in one place.

Each setting is resolved in this order: command-line flag, environment variable
`FLAMENCO_<SECTION>_<NAME>` (e.g. FLAMENCO_SERVER_PORT), the section of the optional TOML file
(`FLAMENCO_CONFIG`, else `~/.config/flamenco/config.toml`), then the default below. The
defaults run a farm on this machine with nothing configured.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flamenco.core.sizes import parse_size
from flamenco.core.urls import check_http_url
from flamenco.procs import host_name, private_file

DEFAULT_SERVER_PORT = 9999
DEFAULT_MANAGER_PORT = 7777
DEFAULT_DASHBOARD_PORT = 8888
# Each blob cache (a Manager's, a Worker's) is bounded to this by default: room for the
# files of a few big jobs at once, small beside today's disks (README, "Disks").
DEFAULT_CACHE_SIZE = 20 * 1000**3
ByteSize = int  # a setting written as a size (`20GB`, `1.5TiB`), core.sizes.parse_size
ServiceUrl = str  # the http(s) URL of a farm service, core.urls.check_http_url
GpuIndex = int  # one GPU by its index (0, 1, …), or EVERY_GPU; gpu_index
EVERY_GPU = -1


class BadSetting(ValueError):
    """A setting's value (flag, environment variable or TOML) cannot be used."""


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "flamenco"


def config_file() -> Path:
    return Path(os.environ.get("FLAMENCO_CONFIG") or user_config_dir() / "config.toml")


def client_config_file() -> Path:
    return user_config_dir() / "client.toml"


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        return tomllib.load(f)


@dataclass
class ServerSettings:
    data_dir: Path = Path("flamenco-data/server")
    host: str = "127.0.0.1"
    port: int = DEFAULT_SERVER_PORT
    database_url: str = ""  # empty: SQLite file in data_dir
    lease_timeout_s: float = 120.0  # a Manager silent this long loses its tasks
    manager_offline_s: float = 30.0  # shown offline after this long without a sync
    max_task_failures: int = 3  # tries of one task before it fails
    blocklist_threshold: int = 3  # failures of one job's tasks that keep a Worker off the job
    max_failed_tasks: int = 0  # a job fails once more of its tasks than this failed for good
    max_upload_bytes: int = 50 * 1024**3
    login_burst: int = 5  # failed logins per client address, and per user name, at once
    login_refill_s: float = 5.0  # then one more each this often
    token_ttl_days: float = 30.0  # a login's token expires after this long; 0: never
    header_timeout_s: float = 10.0  # a connection without a request's headers by then is closed
    # Finished jobs (completed, failed, canceled) untouched this many days are deleted, with
    # their frames and the blobs no other job uses; 0 keeps everything.
    keep_days: float = 0.0
    retention_interval_s: float = 3600.0  # how often the Server looks for such jobs
    # Notifications (README "Notifications"): every job's end is POSTed here too; "" none.
    notify_url: str = ""
    # The Dashboard's address in notifications; empty: port 8888 on the Server's public host.
    dashboard_url: str = ""
    notify_retry_s: float = 5.0  # a failed delivery is tried again after this, doubling,
    notify_retry_max_s: float = 300.0  # never longer than this between two tries,
    notify_give_up_s: float = 3600.0  # until this long after the job ended
    # HTTPS: a PEM certificate (chain) and its unencrypted key, both or neither (tls.py).
    tls_cert: str = ""
    tls_key: str = ""


@dataclass
class ManagerSettings:
    data_dir: Path = Path("flamenco-data/manager")
    host: str = "127.0.0.1"
    port: int = DEFAULT_MANAGER_PORT
    server: ServiceUrl = f"http://127.0.0.1:{DEFAULT_SERVER_PORT}"
    name: str = "local"
    token: str = ""  # the Manager's token issued by the Server
    secret: str = ""  # the join secret for Workers; generated on first start when empty
    prefetch: int = 2  # tasks held beyond the idle Workers, so the next one is at hand
    worker_timeout_s: float = 60.0  # a Worker silent this long is offline; its task moves on
    sync_interval_s: float = 1.0
    header_timeout_s: float = 10.0  # a connection without a request's headers by then is closed
    # The host Workers and people reach it at (its printed URL, its announcement); empty:
    # worked out from `host` (netaddr.public_host).
    advertise: str = ""
    # Announce the site and URL on the network (DNS-SD/mDNS) so that Workers find it without
    # --manager; a Manager bound to a loopback address never announces (flamenco.discovery).
    announce: bool = True
    # Job files cached for its Workers: least recently used ones go beyond this; 0: no bound.
    cache_size: ByteSize = DEFAULT_CACHE_SIZE
    # A blob transfer with the Server silent this long is dropped and resumed where it
    # stopped (client.py: Range for downloads, an upload offset for frames going up).
    transfer_stall_s: float = 30.0
    # HTTPS: a PEM certificate (chain) and its unencrypted key, both or neither (tls.py).
    tls_cert: str = ""
    tls_key: str = ""
    # PEM file of the CA certificates it trusts for HTTPS (else the system's trust store);
    # FLAMENCO_CA_BUNDLE for every client of the machine.
    ca_bundle: str = ""


@dataclass
class WorkerSettings:
    data_dir: Path = Path("flamenco-data/worker")
    # Empty: find it by its announcement on the network (flamenco.discovery), else the
    # Manager on this machine's default port.
    manager: ServiceUrl = ""
    site: str = ""  # with several Managers announced, join the one of this site
    discovery_timeout_s: float = 5.0  # how long to look for announced Managers
    secret: str = ""
    name: str = field(default_factory=host_name)
    # Blender executables or Pythons with bpy, all offered (env: os.pathsep-separated);
    # empty: every `blender` on PATH and the bpy module of this Python.
    blender: list[str] = field(default_factory=list)
    warm_idle_s: float = 120.0  # how long a warm Blender waits for its job's next task
    tags: str = ""  # comma-separated; a job with a tag runs only on Workers that have it
    gpu: GpuIndex = EVERY_GPU  # render on this GPU only (one Worker per GPU)
    gpu_warmup: bool = True  # compile GPU kernels at start, not in a job's first task
    hung_timeout_s: float = 900.0  # a render without any sign of life this long is stopped
    # Keep a Blender with bpy loaded while idle, so that a new job's first task skips that.
    standby_blender: bool = True
    # Job files and frames cached here: least recently used ones go beyond this; 0: no bound.
    cache_size: ByteSize = DEFAULT_CACHE_SIZE
    job_folder_idle_s: float = 600.0  # a job's folder goes once no task of it ran this long
    # A blob transfer with the Manager silent this long is dropped and resumed (client.py).
    transfer_stall_s: float = 30.0
    # PEM file of the CA certificates it trusts for HTTPS (else the system's trust store);
    # FLAMENCO_CA_BUNDLE for every client of the machine.
    ca_bundle: str = ""


@dataclass
class DashboardSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_DASHBOARD_PORT
    server: ServiceUrl = f"http://127.0.0.1:{DEFAULT_SERVER_PORT}"  # the Server whose API it shows
    session_idle_s: float = 12 * 3600.0  # a login is forgotten after this long unused
    header_timeout_s: float = 10.0  # a connection without a request's headers by then is closed
    # HTTPS: a PEM certificate (chain) and its unencrypted key, both or neither (tls.py).
    tls_cert: str = ""
    tls_key: str = ""
    # PEM file of the CA certificates it trusts for HTTPS (else the system's trust store);
    # FLAMENCO_CA_BUNDLE for every client of the machine.
    ca_bundle: str = ""


@dataclass
class UpSettings:
    """`flamenco up`: where its Server, Manager and Dashboard listen, and the host it tells
    other machines (empty: worked out from `host`, see netaddr.public_host)."""

    host: str = "127.0.0.1"  # 0.0.0.0: every interface, so that other machines can join
    advertise: str = ""
    # The same certificate for its Server, Manager and Dashboard; the CA bundle for all of its
    # clients (Manager, Dashboard, Workers, the client configuration it writes).
    tls_cert: str = ""
    tls_key: str = ""
    ca_bundle: str = ""


@dataclass
class ClientSettings:
    server: ServiceUrl = f"http://127.0.0.1:{DEFAULT_SERVER_PORT}"
    token: str = ""
    ca_bundle: str = ""  # FLAMENCO_CA_BUNDLE; empty: the system's trust store


S = TypeVar("S")

SECTIONS: dict[type, str] = {
    ServerSettings: "server",
    ManagerSettings: "manager",
    WorkerSettings: "worker",
    DashboardSettings: "dashboard",
    UpSettings: "up",
    ClientSettings: "client",
}


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def _to_list(value: Any) -> list[str]:
    """A list from TOML or repeated flags; a string (an env variable) split at os.pathsep."""
    items = value.split(os.pathsep) if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def gpu_index(value: Any) -> int:
    """A GPU index as given (a flag, a variable's text, a TOML number); ValueError with one
    sentence for anything else, a negative index other than EVERY_GPU included."""
    text = str(value).strip()
    try:
        index = None if isinstance(value, bool) else int(text)
    except ValueError:  # "two", "1.5" (a TOML float), "--5"
        index = None
    if index is None or index < EVERY_GPU:
        raise ValueError(
            f"{text!r} is not a GPU index: give 0, 1, … for one GPU, or {EVERY_GPU} for every GPU."
        )
    return index


# The setting types whose checks refuse a value with a sentence of their own, kept as said.
EXPLAINED_CASTS: dict[str, Any] = {
    "ByteSize": parse_size,
    "ServiceUrl": check_http_url,
    "GpuIndex": gpu_index,
}


def _cast(kind: Any, value: Any) -> Any:
    casts = {
        "Path": Path,
        "int": int,
        "float": float,
        "str": str,
        "bool": _to_bool,
        "list[str]": _to_list,
        **EXPLAINED_CASTS,
    }
    kind = casts.get(str(kind), kind)
    return kind(value) if callable(kind) else value


def _cast_setting(where: str, kind: Any, value: Any) -> Any:
    """The value as its setting's type; one that is not raises BadSetting naming `where` the
    value came from (the flag, the environment variable or the config file)."""
    try:
        return _cast(kind, value)
    except ValueError as exc:
        explained = str(kind) in EXPLAINED_CASTS
        detail = str(exc) if explained else f"{value!r} is not a valid {kind}."
        raise BadSetting(f"{where}: {detail}") from None


def load(cls: type[S], flags: dict[str, Any] | None = None) -> S:
    """Resolve the settings of one component; flags whose value is None are not given."""
    section = SECTIONS[cls]
    from_file = read_toml(config_file()).get(section, {})
    if cls is ClientSettings:
        from_file = {**read_toml(client_config_file()), **from_file}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        given = (flags or {}).get(f.name)
        sources = (
            (f"--{f.name.replace('_', '-')}", given),
            *((name, os.environ.get(name)) for name in _variables(cls, section, f.name)),
            (f"{f.name} in [{section}] of {config_file()}", from_file.get(f.name)),
        )
        for where, candidate in sources:
            if isinstance(candidate, str):
                candidate = candidate.strip()  # a pasted token often carries a newline
            if candidate is not None and candidate != "":
                values[f.name] = _cast_setting(where, f.type, candidate)
                break
    if cls is WorkerSettings:
        values = _one_worker_per_gpu(values)
    return cls(**values)


def _one_worker_per_gpu(values: dict[str, Any]) -> dict[str, Any]:
    """A Worker pinned to GPU N is one of several on its machine: unless named otherwise it is
    `<host>-gpuN`, and its data (cache, outbox, kernel caches) lives in `<data_dir>/gpuN`, so
    that the Workers of one machine, sharing one config file, never share a name or folder."""
    gpu = values.get("gpu", EVERY_GPU)
    if gpu == EVERY_GPU:
        return values
    data = Path(values.get("data_dir", WorkerSettings.data_dir))
    own = f"gpu{gpu}"
    return {
        **values,
        "name": values.get("name") or f"{host_name()}-{own}",
        "data_dir": data if data.name == own else data / own,
    }


# Settings whose short variable (FLAMENCO_<NAME>) every component reads: one for the machine.
SHARED_VARIABLES = frozenset({"ca_bundle"})


def _variables(cls: type, section: str, name: str) -> list[str]:
    """The environment variables of a setting, first found first. The client's are the
    short, documented ones (FLAMENCO_SERVER, FLAMENCO_TOKEN), then its section's; every
    other component's its section's (FLAMENCO_MANAGER_PORT), then for a shared setting the
    machine's one variable."""
    short, own = f"FLAMENCO_{name.upper()}", f"FLAMENCO_{section.upper()}_{name.upper()}"
    if cls is ClientSettings:
        return [short, own]
    return [own, short] if name in SHARED_VARIABLES else [own]


def write_client_config(server: str, token: str, ca_bundle: str = "") -> Path:
    path = client_config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    trust = f'ca_bundle = "{ca_bundle}"\n' if ca_bundle else ""
    path.write_text(f'server = "{server}"\ntoken = "{token}"\n{trust}')
    private_file(path)
    return path
