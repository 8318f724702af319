"""Names that arrive from elsewhere and end up as files, folders or labels on a farm machine.

Every component checks them with these functions (the Server and the Manager mostly through
the validators of `wire.py`), so that a name one part accepts is one every other part can
write: no control characters, no part longer than a file system takes, nothing that leaves
the folder it is joined to. Pure: no I/O.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from flamenco.core.frames import quote_for_message

MAX_COMPONENT_BYTES = 255  # one file or folder name: what ext4, XFS, APFS and NTFS take
MAX_LABEL_BYTES = 200  # job names, output names and patterns: room for what gets appended
# A whole relative path: PATH_MAX is 4096, and the folder it is joined to needs some of it.
MAX_PATH_BYTES = 3072
# What a Worker may send as a frame: the files Blender writes for a still or a movie.
FRAME_EXTENSIONS = frozenset(
    {
        *(".bmp", ".rgb", ".png", ".jpg", ".jpeg", ".jp2", ".j2c", ".tga", ".cin", ".dpx"),
        *(".exr", ".hdr", ".tif", ".tiff", ".webp"),
        *(".mp4", ".mkv", ".mov", ".avi", ".webm"),
    }
)
# Characters Windows refuses in a file name; a farm's outputs are downloaded there too.
WINDOWS_RESERVED = frozenset('<>:"|?*\\')


class UnsafePath(ValueError):
    """A name or relative path that may not be used: the message is one sentence saying why."""


def quote_name(name: str) -> str:
    """'name' for a message: as it is when it is plain, escaped (one line) and shortened when
    it is not."""
    if name.isprintable() and len(name) <= 100:
        return f"'{name}'"
    return quote_for_message(name)


def byte_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_label(text: str, what: str, limit: int = MAX_LABEL_BYTES) -> str:
    """Return `text` if it is a usable name of something (a job, a Worker, a site): not empty,
    printable, at most `limit` bytes in UTF-8."""
    if not text.strip():
        raise UnsafePath(f"The {what} is empty.")
    if not text.isprintable():
        raise UnsafePath(f"The {what} {quote_name(text)} contains a control character.")
    if byte_length(text) > limit:
        raise UnsafePath(
            f"The {what} {quote_name(text)} is longer than {limit} bytes "
            f"({byte_length(text)} in UTF-8)."
        )
    return text


def check_relative_path(relpath: str, what: str = "path") -> PurePosixPath:
    """Return `relpath` as a relative path, or raise UnsafePath.

    Job files, frame names and cache entries are all addressed by paths that came over the
    network; none of them may point outside the folder they are joined to, and each of their
    parts must be a name every file system takes.
    """
    quoted = quote_name(relpath)
    if not relpath or "\\" in relpath or "\0" in relpath:
        raise UnsafePath(f"The {what} {quoted} is not a valid relative path.")
    if not relpath.isprintable():
        raise UnsafePath(f"The {what} {quoted} contains a control character.")
    parts = relpath.split("/")
    if relpath.startswith("/") or ".." in parts or ":" in parts[0]:
        raise UnsafePath(f"The {what} {quoted} tries to leave its folder.")
    if any(part in ("", ".") for part in parts):
        raise UnsafePath(f"The {what} {quoted} has an empty or '.' part.")
    for part in parts:
        if byte_length(part) > MAX_COMPONENT_BYTES:
            raise UnsafePath(
                f"The {what} {quoted} has a part longer than {MAX_COMPONENT_BYTES} bytes "
                f"({byte_length(part)} in UTF-8)."
            )
    if byte_length(relpath) > MAX_PATH_BYTES:
        raise UnsafePath(f"The {what} {quoted} is longer than {MAX_PATH_BYTES} bytes.")
    return PurePosixPath(relpath)


def check_file_name(name: str, what: str = "file", limit: int = MAX_COMPONENT_BYTES) -> str:
    """Return `name` if it is one plain file name, else raise UnsafePath: no folder, not
    hidden, no character Windows refuses, no trailing dot or space, at most `limit` bytes."""
    if not name.strip("./"):
        raise UnsafePath(f"The {what} name {quote_name(name)} is not a plain file name.")
    check_relative_path(name, f"{what} name")  # says so when it tries to leave its folder
    if "/" in name:
        raise UnsafePath(f"The {what} name {quote_name(name)} must not contain a folder.")
    plain = not (name.startswith(".") or name.endswith((".", " ")) or WINDOWS_RESERVED & set(name))
    if not plain:
        raise UnsafePath(f"The {what} name {quote_name(name)} is not a plain file name.")
    if byte_length(name) > limit:
        raise UnsafePath(
            f"The {what} name {quote_name(name)} is longer than {limit} bytes "
            f"({byte_length(name)} in UTF-8)."
        )
    return name


def check_artifact_name(name: str) -> str:
    """Return `name` if it can name a job's output besides its frames (its preview video, the
    files a blender-script task lists): its path in the job's folder, `cache/fluid_0001.vdb`,
    each part a plain name (see check_file_name), at most MAX_LABEL_BYTES in all."""
    check_relative_path(name, "artifact name")  # says so when it tries to leave its folder
    for part in name.split("/"):
        check_file_name(part, "artifact")
    if byte_length(name) > MAX_LABEL_BYTES:
        raise UnsafePath(
            f"The artifact name {quote_name(name)} is longer than {MAX_LABEL_BYTES} bytes "
            f"({byte_length(name)} in UTF-8)."
        )
    return name


def check_frame_file_name(name: str) -> str:
    """Return `name` if it can be a rendered frame's file: a plain file name (see
    check_file_name) with the extension of an image or a movie."""
    check_file_name(name, "frame file")
    extension = PurePosixPath(name).suffix.lower()
    if extension not in FRAME_EXTENSIONS:
        raise UnsafePath(
            f"The frame file name {quote_name(name)} does not end in an image or movie "
            f"extension such as .png, .jpg, .exr or .mp4."
        )
    return name
