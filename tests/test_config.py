"""Settings resolve flag > FLAMENCO_* environment > TOML file > default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flamenco.config import (
    BadSetting,
    ClientSettings,
    ManagerSettings,
    ServerSettings,
    WorkerSettings,
    load,
    write_client_config,
)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in (
        "FLAMENCO_CONFIG",
        "FLAMENCO_SERVER",
        "FLAMENCO_TOKEN",
        "FLAMENCO_SERVER_PORT",
        "FLAMENCO_WORKER_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "flamenco.toml"
    config.write_text('[server]\nport = 1111\nhost = "0.0.0.0"\n[worker]\nname = "from-toml"\n')
    monkeypatch.setenv("FLAMENCO_CONFIG", str(config))
    return tmp_path


@pytest.mark.parametrize(
    ("flags", "env", "expected_port", "expected_host"),
    [
        ({}, {}, 1111, "0.0.0.0"),
        ({}, {"FLAMENCO_SERVER_PORT": "2222"}, 2222, "0.0.0.0"),
        ({"port": 3333}, {"FLAMENCO_SERVER_PORT": "2222"}, 3333, "0.0.0.0"),
        ({"port": None, "host": "127.0.0.2"}, {}, 1111, "127.0.0.2"),
    ],
    ids=["toml", "env-over-toml", "flag-over-env", "unset-flag-falls-through"],
)
def test_server_settings_precedence(
    monkeypatch: pytest.MonkeyPatch,
    flags: dict,
    env: dict,
    expected_port: int,
    expected_host: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load(ServerSettings, flags)
    assert (settings.port, settings.host) == (expected_port, expected_host)
    assert settings.data_dir == Path("flamenco-data/server")  # the default stays


def test_defaults_work_without_any_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLAMENCO_CONFIG", str(tmp_path / "absent.toml"))
    assert load(ServerSettings).port == 9999
    assert load(ClientSettings).server == "http://127.0.0.1:9999"
    assert load(WorkerSettings).name  # the host name


def test_client_reads_written_config_and_short_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    write_client_config("http://farm:1234", "tok-file")
    assert load(ClientSettings) == ClientSettings(server="http://farm:1234", token="tok-file")
    monkeypatch.setenv("FLAMENCO_TOKEN", "tok-env")
    monkeypatch.setenv("FLAMENCO_SERVER", "http://other:1")
    assert load(ClientSettings) == ClientSettings(server="http://other:1", token="tok-env")
    assert load(ClientSettings, {"server": "http://flag:2"}).server == "http://flag:2"


@pytest.mark.parametrize(
    ("flags", "name", "data_dir"),
    [
        ({}, "{host}", "flamenco-data/worker"),
        ({"gpu": 1}, "{host}-gpu1", "flamenco-data/worker/gpu1"),
        ({"gpu": 0, "data_dir": "/farm/w"}, "{host}-gpu0", "/farm/w/gpu0"),
        ({"gpu": 2, "data_dir": "/farm/w/gpu2"}, "{host}-gpu2", "/farm/w/gpu2"),
        ({"gpu": 1, "name": "box-a"}, "box-a", "flamenco-data/worker/gpu1"),
    ],
)
def test_a_worker_for_one_gpu_has_its_own_name_and_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: dict, name: str, data_dir: str
) -> None:
    monkeypatch.setenv("FLAMENCO_CONFIG", str(tmp_path / "absent.toml"))
    settings = load(WorkerSettings, flags)
    assert settings.name == name.format(host=os.uname().nodename)
    assert settings.data_dir == Path(data_dir)


@pytest.mark.parametrize(
    ("flags", "env", "toml", "expected"),
    [
        ({}, None, None, []),  # none: the Worker looks for every Blender itself
        ({}, None, '["/a/blender", "/b/python"]', ["/a/blender", "/b/python"]),
        ({}, f"/e/blender{os.pathsep}/f/python", '["/a/blender"]', ["/e/blender", "/f/python"]),
        ({}, "/e/blender", None, ["/e/blender"]),
        ({"blender": ["/x/python", "/y/blender"]}, "/e/blender", None, ["/x/python", "/y/blender"]),
    ],
)
def test_worker_blenders_are_a_list(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: dict[str, list[str]],
    env: str | None,
    toml: str | None,
    expected: list[str],
) -> None:
    config = isolated / "blenders.toml"
    config.write_text(f"[worker]\nblender = {toml}\n" if toml else "")
    monkeypatch.setenv("FLAMENCO_CONFIG", str(config))
    if env is None:
        monkeypatch.delenv("FLAMENCO_WORKER_BLENDER", raising=False)
    else:
        monkeypatch.setenv("FLAMENCO_WORKER_BLENDER", env)
    assert load(WorkerSettings, flags).blender == expected


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({}, {}, 20 * 1000**3),
        ({}, {"FLAMENCO_WORKER_CACHE_SIZE": "40MB"}, 40 * 1000**2),
        ({"cache_size": "1.5TiB"}, {"FLAMENCO_WORKER_CACHE_SIZE": "40MB"}, int(1.5 * 1024**4)),
        ({"cache_size": "unlimited"}, {}, 0),
    ],
    ids=["default-20GB", "env", "flag-over-env", "unlimited"],
)
def test_worker_cache_size(
    monkeypatch: pytest.MonkeyPatch, flags: dict, env: dict, expected: int
) -> None:
    monkeypatch.delenv("FLAMENCO_WORKER_CACHE_SIZE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load(WorkerSettings, flags).cache_size == expected


def test_a_cache_size_that_is_not_one_names_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(BadSetting, match=r"^--cache-size: 'lots' is not a size; write it like"):
        load(WorkerSettings, {"cache_size": "lots"})
    monkeypatch.setenv("FLAMENCO_MANAGER_CACHE_SIZE", "20 XB")
    with pytest.raises(BadSetting, match=r"^FLAMENCO_MANAGER_CACHE_SIZE: '20 XB' is not a size"):
        load(ManagerSettings, {})


@pytest.mark.parametrize(
    ("settings", "flag", "variable", "value"),
    [
        (ClientSettings, "--server", "FLAMENCO_SERVER", "farm:9999"),
        (ClientSettings, "--server", "FLAMENCO_CLIENT_SERVER", "ftp://farm"),
        (ManagerSettings, "--server", "FLAMENCO_MANAGER_SERVER", "notaurl"),
        (WorkerSettings, "--manager", "FLAMENCO_WORKER_MANAGER", "localhost:7777"),
    ],
)
def test_a_service_url_that_is_not_one_names_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, settings: type, flag: str, variable: str, value: str
) -> None:
    """Refused when the settings are read, with the flag or the very variable that gave it,
    instead of a component that starts and then cannot reach "notaurl"."""
    field = flag.removeprefix("--")
    sentence = f"'{value}' is not an http:// or https:// URL with a host."
    with pytest.raises(BadSetting) as from_flag:
        load(settings, {field: value})
    assert str(from_flag.value) == f"{flag}: {sentence}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(BadSetting) as from_variable:
        load(settings, {})
    assert str(from_variable.value) == f"{variable}: {sentence}"
    assert load(settings, {field: "http://127.0.0.1:1"}) is not None  # the flag comes first


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("--gpu", "-5"),
        ("--gpu", -2),
        ("FLAMENCO_WORKER_GPU", "two"),
        ("FLAMENCO_WORKER_GPU", "--5"),
        ("toml", "1.5"),
    ],
)
def test_a_gpu_index_that_is_not_one_names_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, isolated: Path, where: str, value: str | int
) -> None:
    """A negative index other than -1 (every GPU) meant every GPU before, silently."""
    config = isolated / "gpu.toml"
    config.write_text(f"[worker]\ngpu = {value}\n" if where == "toml" else "")
    monkeypatch.setenv("FLAMENCO_CONFIG", str(config))
    monkeypatch.delenv("FLAMENCO_WORKER_GPU", raising=False)
    if where.startswith("FLAMENCO_"):
        monkeypatch.setenv(where, str(value))
    with pytest.raises(BadSetting) as refused:
        load(WorkerSettings, {"gpu": value} if where == "--gpu" else {})
    named = f"gpu in [worker] of {config}" if where == "toml" else where
    assert str(refused.value) == (
        f"{named}: '{value}' is not a GPU index: give 0, 1, … for one GPU, or -1 for every GPU."
    )


@pytest.mark.parametrize(("given", "gpu"), [(None, -1), ("-1", -1), ("0", 0), (3, 3)])
def test_a_gpu_index_is_read_as_given(isolated: Path, given: str | int | None, gpu: int) -> None:
    assert load(WorkerSettings, {"gpu": given}).gpu == gpu
