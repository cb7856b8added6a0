#!/usr/bin/env bash
# Install what agentloop's local sandbox needs: bubblewrap (namespaces) and util-linux (setpriv).
# Best effort: where nothing can be installed it warns and exits 0 (the sandbox tests then skip, and
# get_sandbox("local") refuses with instructions). Then it checks that bwrap can create a sandbox here.
#   usage: scripts/install-sandbox-deps.sh
set -uo pipefail

need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
  fi
  if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
    echo "install-sandbox-deps: not root and no passwordless sudo; please install: ${need[*]}" >&2
  elif command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" \
      || echo "install-sandbox-deps: apt-get failed to install ${need[*]}" >&2
  elif command -v dnf >/dev/null 2>&1; then
    $SUDO dnf install -y -q "${need[@]}" || echo "install-sandbox-deps: dnf failed" >&2
  elif command -v apk >/dev/null 2>&1; then
    $SUDO apk add --quiet "${need[@]}" || echo "install-sandbox-deps: apk failed" >&2
  else
    echo "install-sandbox-deps: no known package manager; please install: ${need[*]}" >&2
  fi
fi

if command -v bwrap >/dev/null 2>&1; then
  if bwrap --unshare-pid --unshare-net --unshare-ipc --ro-bind / / --proc /proc --dev /dev true 2>/dev/null \
     || bwrap --unshare-user --unshare-pid --unshare-net --ro-bind / / --proc /proc --dev /dev true 2>/dev/null; then
    echo "install-sandbox-deps: bubblewrap $(bwrap --version | awk '{print $2}') works here: the local sandbox is available."
  else
    echo "install-sandbox-deps: bwrap is installed but cannot create namespaces here (run as root, or enable" \
         "unprivileged user namespaces); the local sandbox will refuse and its tests skip." >&2
  fi
else
  echo "install-sandbox-deps: bubblewrap is not available; the local sandbox will refuse and its tests skip." >&2
fi
exit 0
