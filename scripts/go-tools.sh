# Shared by the scripts/build-*.sh that build test peers and tools from Go modules
# (sourced, not run).

# need_go SCRIPT VERSION: Go on PATH (the usual places tried), else one line and exit 2.
need_go() {
  if ! command -v go >/dev/null; then
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
      [ -x "$candidate" ] && PATH="$(dirname "$candidate"):$PATH" && break
    done
  fi
  if ! command -v go >/dev/null; then
    echo "$1: Go not found: install Go $2+ (e.g. apt-get install golang-go) and retry" >&2
    exit 2
  fi
}

# hold_lock FILE SCRIPT: hold FILE (fd 9) until the script ends; a second build of the
# same thing waits here for the first (CI's background build and a test's call).
hold_lock() {
  exec 9>"$1"
  if ! flock -n 9; then
    echo "$2: another build holds $1; waiting for it..."
    flock 9
  fi
}
