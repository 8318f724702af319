# Shared by scripts/farm and scripts/test: make sure .venv exists with Flamenco installed.
# Works on a fresh Debian that has only Python 3.11 and pip (no python3-venv package needed).

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  echo "Flamenco needs Python 3.11 (the Blender 5.0 bpy wheel is built for it only)." >&2
  return 1
}

create_venv() {
  local python="$1" dir="${2:-.venv}"
  if "$python" -m venv "$dir" 2>/dev/null && [ -x "$dir/bin/pip" ]; then return 0; fi
  rm -rf "$dir"
  # Debian ships venv without ensurepip unless python3-venv is installed: fall back.
  "$python" -m pip install --quiet --user virtualenv 2>/dev/null ||
    "$python" -m pip install --quiet --user --break-system-packages virtualenv
  "$python" -m virtualenv --quiet "$dir"
}

ensure_venv() {
  local extras="$1" python stamp
  python=$(find_python)
  [ -x .venv/bin/python ] || create_venv "$python"
  stamp=".venv/.flamenco-installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras//,/-}"
  if [ ! -e "$stamp" ]; then
    echo "Installing Flamenco and its dependencies into .venv (extras: $extras)…" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
    touch "$stamp"
  fi
}

# Older Blenders for the tests of a Worker offering several versions: each a venv of its own with
# one bpy wheel (about 370 MB), stamped like .venv so a second run reuses it.
ensure_bpy_venv() {
  local dir="$1" spec="$2" python stamp
  python=$(find_python)
  stamp="$dir/.flamenco-bpy-${spec//[^0-9A-Za-z.]/_}"
  [ -e "$stamp" ] && return 0
  echo "Installing $spec into $dir for the multi-Blender tests…" >&2
  rm -rf "$dir"
  create_venv "$python" "$dir"
  "$dir/bin/python" -m pip install --quiet "$spec"
  touch "$stamp"
}

# Debian tools some tests drive: installed when missing and running as root (one apt-get update
# per run); otherwise those tests fail and say how to install them. Extra arguments go to apt-get.
ensure_debian_tool() {
  local tool="$1" package="$2" needed_by="$3"
  shift 3
  if command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/bin/$tool" ]; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's $package for $needed_by…" >&2
    { { [ -n "${APT_UPDATED:-}" ] || apt-get update -qq; } && APT_UPDATED=1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" "$package" >/dev/null; } ||
      echo "Installing $package failed; $needed_by will fail." >&2
  else
    echo "$tool is missing: $needed_by need it (apt-get install $package)." >&2
  fi
}

# The Dashboard's browser tests drive Debian's Chromium (Playwright's own browser download does
# not work everywhere).
ensure_chromium() { ensure_debian_tool chromium chromium "the Dashboard tests"; }

# The service tests check the generated systemd units with `systemd-analyze verify`; the package
# alone installs it (systemd does not become the init system, and nothing is started).
ensure_systemd_analyze() {
  ensure_debian_tool systemd-analyze systemd "the service tests" --no-install-recommends
}
