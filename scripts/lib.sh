# Shared helpers of scripts/*: sourced, not run.

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: '$*' needs root and sudo is not installed" >&2
    return 1
  fi
}

# Installs HAProxy with apt-get when `haproxy` is not on PATH.
ensure_haproxy() {
  if command -v haproxy >/dev/null 2>&1; then
    return 0
  fi
  echo "==> haproxy not found: installing it with apt-get"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy
}

# Where cargo puts build output (honours CARGO_TARGET_DIR).
target_dir() {
  echo "${CARGO_TARGET_DIR:-target}"
}

# Installs kubectl (Debian's kubernetes-client) when it is not on PATH, for tests/kubectl.
ensure_kubectl() {
  if command -v kubectl >/dev/null 2>&1; then
    return 0
  fi
  echo "==> kubectl not found: installing kubernetes-client with apt-get"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y kubernetes-client
}
