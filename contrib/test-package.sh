#!/bin/bash
# The package test (run by contrib/test.sh in CI, as root): build the .deb,
# install it, run the Docker suite against the installed binaries, remove it,
# and check that Docker's daemon.json is back to what it was.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-deb >/dev/null; then
    echo "package: installing cargo-deb"
    cargo install cargo-deb --locked --quiet
fi
packaging/build-deb.sh --quiet
deb=$(ls target/debian/ds01_*.deb | tail -n 1)

daemon=/etc/docker/daemon.json
made_sample=""
if [ ! -e "$daemon" ]; then
    # Give the merge something to keep: another runtime and another key.
    mkdir -p /etc/docker
    printf '{\n  "log-level": "warn",\n  "runtimes": {\n    "nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}\n  }\n}\n' > "$daemon"
    made_sample=1
fi
before=$(mktemp)
cp -p "$daemon" "$before"
cleanup() {
    dpkg -s ds01 >/dev/null 2>&1 && apt-get purge -y -qq ds01 >/dev/null 2>&1 || true
    [ -n "$made_sample" ] && rm -f "$daemon"
    rm -f "$before"
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# A fresh install: nothing left from an earlier run (conffiles, state).
dpkg --purge ds01 >/dev/null 2>&1 || true
apt-get install -y -qq "./$deb" >/dev/null
grep -q '"default-runtime": "ds01"' "$daemon" || { echo "package: daemon.json does not name ds01 as default runtime" >&2; cat "$daemon" >&2; exit 1; }
grep -q '"nvidia"' "$daemon" || { echo "package: the nvidia runtime was lost from daemon.json" >&2; exit 1; }
[ -x /usr/bin/ds01-runtime ] && [ -x /usr/bin/ds01-accounts ] && [ -x /usr/bin/ds01-poststop ] && [ -x /usr/bin/ds01 ] && [ -L /usr/bin/devcontainer ] && [ -L /usr/bin/container ] && [ -L /usr/bin/project ] && [ -L /usr/bin/ds01-logs ] && [ -f /etc/ds01/images.toml ]
/usr/bin/container ls --all --json >/dev/null
/usr/bin/ds01-gate --help >/dev/null
# The installed rules load in Prometheus' own checker.
promtool check rules /usr/share/ds01/prometheus/ds01-rules.yml >/dev/null
for f in /usr/lib/systemd/system/ds01-reap.service /usr/lib/systemd/system/ds01-reap.timer /usr/lib/systemd/system/ds01-gate.service /etc/profile.d/ds01.sh /usr/share/ds01/grafana/ds01.json /usr/share/ds01/prometheus/ds01-rules.yml; do
    [ -f "$f" ] || { echo "package: $f is not installed" >&2; exit 1; }
done
# The login snippet shows a pending notice once.
home=$(mktemp -d)
mkdir "$home/.ds01" && echo "ds01: your container x will be stopped in 30m" > "$home/.ds01/notices"
shown=$(HOME="$home" sh -c '. /etc/profile.d/ds01.sh')
again=$(HOME="$home" sh -c '. /etc/profile.d/ds01.sh')
rm -rf "$home"
[ "$shown" = "ds01: your container x will be stopped in 30m" ] && [ -z "$again" ] || {
    echo "package: the login snippet showed '$shown', then '$again'" >&2; exit 1; }
echo "package: installed $deb; daemon.json names ds01 as default runtime"

DS01_E2E=1 DS01_RUNTIME_BIN=/usr/bin/ds01-runtime DS01_CLI_BIN=/usr/bin/ds01 \
    cargo test --locked --test e2e_docker

apt-get remove -y -qq ds01 >/dev/null
if ! cmp -s "$before" "$daemon"; then
    echo "package: daemon.json differs from before the install:" >&2
    diff "$before" "$daemon" >&2 || true
    exit 1
fi
for f in /usr/bin/ds01-runtime /usr/bin/ds01-accounts /usr/bin/ds01-poststop; do
    [ ! -e "$f" ] || { echo "package: $f is still there" >&2; exit 1; }
done
echo "package: removed; daemon.json is byte for byte what it was"
