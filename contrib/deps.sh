# Sourced by the demo and the test command: what the end-to-end runs need
# from Debian or Ubuntu (runc, busybox-static, docker.io, prometheus), installed where
# missing. Extra package names may be given.
install_missing() {
    _missing="$*"
    [ -x /usr/sbin/runc ] || [ -x /usr/bin/runc ] || _missing="$_missing runc"
    [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || _missing="$_missing busybox-static"
    { [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ]; } || _missing="$_missing docker.io"
    # nm and strip: the static runtime's build (packaging/build-runtime.sh).
    { [ -x /usr/bin/nm ] && [ -x /usr/bin/strip ]; } || _missing="$_missing binutils"
    # Raw requests to ds01-gate as a test user.
    [ -x /usr/bin/curl ] || _missing="$_missing curl"
    # A Compose project through ds01-gate.
    [ -x /usr/bin/docker-compose ] || _missing="$_missing docker-compose"
    # The metrics through the real tools (promtool comes with prometheus).
    [ -x /usr/bin/prometheus ] || _missing="$_missing prometheus"
    [ -x /usr/bin/prometheus-node-exporter ] || _missing="$_missing prometheus-node-exporter"
    _missing=$(echo $_missing)
    [ -n "$_missing" ] || return 0
    echo "installing: $_missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $_missing >/dev/null
}

# The official Dev Containers CLI where ds01 looks for it, for the test that
# runs `devcontainer up` through ds01-gate; where npm is (the CI machines
# have it). Best effort: without it that part of the test says it was not tried.
install_devcontainer_cli() {
    _cli=/usr/local/lib/devcontainers-cli/bin/devcontainer
    [ -x "$_cli" ] && return 0
    command -v npm >/dev/null 2>&1 || return 0
    echo "installing: @devcontainers/cli"
    npm install -g --prefix /usr/local/lib/devcontainers-cli @devcontainers/cli >/dev/null 2>&1 ||
        echo "could not install @devcontainers/cli; devcontainer up through the gate is not tried" >&2
}
