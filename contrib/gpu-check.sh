#!/bin/bash
# The check on a machine with an NVIDIA GPU, as root, in under 5 minutes:
#  1. builds ds01;
#  2. scans the GPUs through NVML and compares them with `nvidia-smi -L`;
#  3. runs a container through ds01-runtime and the real runc, with the
#     driver brought by the way this host has (CDI, NVIDIA's hook, or else
#     the host's nvidia-smi and libnvidia-ml mounted read-only), running
#     `nvidia-smi -L` inside;
#  4. passes when exactly the allocated device shows there, and the device
#     is free afterwards.
# It reads the GPUs' settings and never changes them: no MIG reconfiguration,
# no persistence mode, no clocks, no reset.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '%s\n' "gpu-check: $*"; }
fail() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (runc needs it)"
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this machine has no NVIDIA driver"
runc=$(command -v runc || true)
[ -n "$runc" ] || fail "runc not found (apt-get install runc)"

say "driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
nvidia-smi -L | sed 's/^/  /'

say "building"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked --workspace --bins 2>&1 | tail -n 2
shim=$PWD/target/release/ds01-runtime
cli=$PWD/target/release/ds01

work=$(mktemp -d /tmp/ds01-gpu-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cat > "$work/config.toml" <<EOF
runc = "$runc"
state_dir = "$work/state"
log = "$work/log/runtime.log"
audit_log = "$work/log/events.jsonl"
inventory = "nvml"
EOF
export DS01_CONFIG=$work/config.toml

say "inventory from NVML"
"$cli" gpus refresh >/dev/null
"$cli" gpus
"$cli" gpus --json > "$work/gpus.json"
ours=$(grep -o '"uuid": "[^"]*"' "$work/gpus.json" | cut -d'"' -f4 | sort -u)
theirs=$(nvidia-smi -L | grep -o 'UUID: [^)]*' | cut -d' ' -f2 | sort -u)
if [ "$ours" != "$theirs" ]; then
    diff <(echo "$theirs") <(echo "$ours") | sed 's/^/  /'
    fail "the NVML inventory (>) differs from nvidia-smi -L (<)"
fi
say "ok: the inventory names the same $(echo "$ours" | wc -l) GPUs and MIG devices as nvidia-smi -L"

say "a container through ds01-runtime and $runc"
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs/bin" "$rootfs/usr/bin" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
# nvidia-smi is linked against glibc: the C library it needs goes into the
# root filesystem (what any distribution image would hold).
smi=$(command -v nvidia-smi)
for lib in $(ldd "$smi" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
cp -L /bin/sh "$rootfs/bin/sh" 2>/dev/null || true
for lib in $(ldd /bin/sh | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$rootfs$(dirname "$lib")"; cp -L "$lib" "$rootfs$lib"
done
method=none
extra_mounts=""
if ls /etc/cdi/*.yaml /etc/cdi/*.json /var/run/cdi/*.yaml /var/run/cdi/*.json >/dev/null 2>&1; then
    method=cdi
elif command -v nvidia-container-runtime-hook >/dev/null; then
    method=hook
else
    # Nothing to bring the driver: the host's own, read-only.
    nvml=$(ldconfig -p | grep -m1 'libnvidia-ml.so.1 ' | sed 's/.*=> //')
    [ -n "$nvml" ] || fail "libnvidia-ml.so.1 not found by ldconfig"
    extra_mounts=$(printf '{"destination":"/usr/bin/nvidia-smi","type":"bind","source":"%s","options":["bind","ro"]},{"destination":"%s","type":"bind","source":"%s","options":["bind","ro"]},' "$smi" "$nvml" "$nvml")
    mkdir -p "$rootfs$(dirname "$nvml")"; touch "$rootfs$nvml" "$rootfs/usr/bin/nvidia-smi"
fi
say "driver brought by: $method"
cd "$work/bundle"
"$runc" spec
python3 - "$extra_mounts" <<'EOF'
import json, sys
spec = json.load(open("config.json"))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["/bin/sh", "-c", "echo VISIBLE=$NVIDIA_VISIBLE_DEVICES; nvidia-smi -L"]
spec["process"]["env"].append("NVIDIA_VISIBLE_DEVICES=all")
spec["process"]["env"].append("PATH=/usr/bin:/bin")
spec["root"] = {"path": "rootfs", "readonly": False}
if sys.argv[1]:
    spec["mounts"] += json.loads("[" + sys.argv[1].rstrip(",") + "]")
json.dump(spec, open("config.json", "w"), indent=1)
EOF
set +e
out=$(timeout 120 "$shim" --root "$work/runc-root" --log "$work/bundle/log.json" --log-format json run --bundle "$work/bundle" gpu-check 2>&1)
rc=$?
set -e
echo "$out" | sed 's/^/  /'
[ $rc -eq 0 ] || { cat "$work/bundle/log.json" 2>/dev/null; tail -n 5 "$work/log/runtime.log" 2>/dev/null; fail "the container failed (exit $rc)"; }
allocated=$(echo "$out" | sed -n 's/^VISIBLE=//p')
[ -n "$allocated" ] || fail "no allocation reached the container"
shown=$(echo "$out" | grep -o 'UUID: [^)]*' | cut -d' ' -f2)
# A MIG slice shows under its parent GPU: the slice must show, and no other GPU or slice.
for u in $allocated; do echo "$shown" | grep -qx "$u" || fail "allocated $u does not show inside"; done
others=$(echo "$shown" | grep -vxF -f <(echo "$allocated" | tr ',' '\n') | grep '^MIG-' || true)
[ -z "$others" ] || fail "other MIG devices show inside: $others"
if [[ $allocated == GPU-* ]]; then
    [ "$(echo "$shown" | grep -c '^GPU-')" -eq 1 ] || fail "more than the allocated GPU shows inside"
fi
say "ok: exactly $allocated shows inside"
"$cli" gpus --json > "$work/after.json"
grep -q '"held_by": {' "$work/after.json" && fail "the device is still held after the container ended"
say "ok: the device is free again"
say "PASS"
