#!/usr/bin/env bash
# Create (or reuse) the virtualenv in .venv, install requirements.txt into it, then the project itself
# (editable, so .venv/bin/vidclass is `python -m app`). Python 3.10-3.13; on 3.11, CI's interpreter,
# constraints.txt pins the exact versions CI uses. The install is skipped when requirements.txt,
# constraints.txt and pyproject.toml have not changed since the last successful one.
set -euo pipefail
cd "$(dirname "$0")/.."

supported='import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))'
if [ ! -x .venv/bin/python ]; then
  PY="${PYTHON:-}"
  if [ -z "$PY" ]; then
    for cand in python3.11 python3.12 python3.13 python3.10 python3; do
      if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "$supported" 2>/dev/null; then PY="$cand"; break; fi
    done
  fi
  [ -n "$PY" ] || { echo "error: no Python 3.10-3.13 found (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  command -v "$PY" >/dev/null 2>&1 || { echo "error: $PY not found (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  "$PY" -c "$supported" 2>/dev/null \
    || { echo "error: $PY is not Python 3.10-3.13 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  echo "creating .venv with $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"
  "$PY" -m venv .venv
fi
.venv/bin/python -c "$supported" \
  || { echo "error: .venv is not Python 3.10-3.13: remove it and run this again" >&2; exit 1; }

pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  lock=(-c constraints.txt)  # CI's exact versions
else
  lock=()  # the newest versions requirements.txt allows on this Python
fi

stamp=.venv/.requirements.sha256
want=$(cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x .venv/bin/vidclass ]; then
  echo "installing requirements.txt${lock:+ with constraints.txt} into .venv (first time: a few minutes, ~6 GB)"
  "${pip[@]}" -r requirements.txt ${lock[@]+"${lock[@]}"}  # (an empty array trips `set -u` in bash < 4.4)
  "${pip[@]}" -e . --no-deps
  echo "$want" > "$stamp"
fi
