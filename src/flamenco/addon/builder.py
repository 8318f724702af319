"""Building the add-on's zip: a Blender 4.2+ extension, installable with "Install from Disk".

The zip holds ``render_flamenco/`` at its root (``blender_manifest.toml`` with Flamenco's
version, the Python modules) plus blender-asset-tracer, copied from the installed package
into ``_vendor/`` at build time, and Flamenco's own ``core/tiles.py`` as ``flamenco_tiles.py``
(standard library only), so the add-on checks a tile count as the CLI and Server do.
Entries are sorted and dated 1980-01-01, so the same sources always give the same bytes: the
zip `flamenco addon build` writes is the one the Server offers.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

from flamenco import __version__

ADDON_ID = "render_flamenco"
SOURCE = Path(__file__).with_name(ADDON_ID)
MANIFEST = "blender_manifest.toml"
VENDOR = "_vendor"
BAT = "blender_asset_tracer"
# Parts of BAT the add-on does not use and that need packages Blender lacks (requests, boto3).
BAT_LEFT_OUT = ("cli/", "pack/shaman/", "pack/s3.py", "__main__.py")
# Flamenco modules the add-on uses, copied in at build time: zip path -> source.
SHARED = {
    "flamenco_tiles.py": Path(__file__).parents[1] / "core" / "tiles.py",
    "flamenco_settings_schema.py": Path(__file__).parents[1] / "core" / "settings_schema.py",
}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class AddonBuildError(RuntimeError):
    """The zip cannot be built; the message says why."""


def zip_name(version: str = __version__) -> str:
    return f"{ADDON_ID}-{version}.zip"


def _python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path


def _manifest(version: str) -> bytes:
    text = (SOURCE / MANIFEST).read_text(encoding="utf-8")
    text, count = re.subn(r'(?m)^version = "[^"]*"$', f'version = "{version}"', text)
    if count != 1:
        raise AddonBuildError(f"{MANIFEST} has no single 'version = \"…\"' line.")
    return text.encode("utf-8")


def _bat_files() -> dict[str, bytes]:
    """blender-asset-tracer's modules and licence, as paths inside the zip."""
    spec = importlib.util.find_spec(BAT)
    if spec is None or not spec.submodule_search_locations:
        raise AddonBuildError(
            "blender-asset-tracer is not installed; it is bundled into the add-on "
            "(pip install blender-asset-tracer)."
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    files: dict[str, bytes] = {}
    for path in _python_files(package):
        rel = path.relative_to(package).as_posix()
        if not rel.startswith(BAT_LEFT_OUT):
            files[f"{VENDOR}/{BAT}/{rel}"] = path.read_bytes()
    version = "unknown"
    licence = b""
    for dist in sorted(package.parent.glob("blender_asset_tracer-*.dist-info")):
        version = dist.name.removeprefix("blender_asset_tracer-").removesuffix(".dist-info")
        for candidate in sorted(dist.rglob("LICENSE*")):
            licence = candidate.read_bytes()
    if licence:
        files[f"{VENDOR}/{BAT}-LICENSE.txt"] = licence
    files[f"{VENDOR}/README.txt"] = (
        f"blender-asset-tracer {version} (https://projects.blender.org/blender/"
        "blender-asset-tracer), GPL-2.0-or-later, by Sybren A. Stüvel and the Blender "
        "Foundation.\nCopied unchanged from the installed package when this add-on was "
        f"built; left out: {', '.join(BAT_LEFT_OUT)}.\n"
    ).encode()
    return files


def addon_files(version: str = __version__) -> dict[str, bytes]:
    """Every file of the zip: path inside it -> contents."""
    if not (SOURCE / "__init__.py").is_file():
        raise AddonBuildError(f"The add-on's source is missing at {SOURCE}.")
    files = {
        path.relative_to(SOURCE).as_posix(): path.read_bytes()
        for path in _python_files(SOURCE)
        if path.name != MANIFEST
    }
    files[MANIFEST] = _manifest(version)
    files.update({name: source.read_bytes() for name, source in SHARED.items()})
    files.update(_bat_files())
    return files


def build_bytes(version: str = __version__) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(addon_files(version).items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buffer.getvalue()


@functools.cache
def cached_bytes() -> bytes:
    """The zip, built once per process (the Server serves it from memory)."""
    return build_bytes()


def build(dest: Path) -> Path:
    """Write the zip to `dest`: a path ending in .zip, or a folder (created if needed)."""
    target = dest if dest.suffix == ".zip" else dest / zip_name()
    target.parent.mkdir(parents=True, exist_ok=True)
    data = build_bytes()
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target
