# Sourced by scripts/demo and scripts/test: create .venv if missing and install the project into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x "$root/.venv/bin/python" ]; then
  "$python" -m venv "$root/.venv" || {
    echo "could not create a virtual environment: install python3-venv (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
stamp="$root/.venv/.linewatch-installed${extras:+-$extras}"
# An editable install made from another checkout (a worktree, a copy) imports that checkout's code.
here() { grep -qsxF "$root/src" "$root"/.venv/lib/python*/site-packages/_editable_impl_linewatch.pth; }
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || ! here; then
  echo "installing linewatch${extras:+ [$extras]} into .venv ..." >&2
  "$root/.venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$root/.venv/bin/python" -m pip install --quiet -e "$root${extras:+[$extras]}" >&2
  touch "$stamp"
fi
