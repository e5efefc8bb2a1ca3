#!/bin/sh
# A stand-in for runc: records its argv (one argument per line) and, on
# create/run/restore, a copy of the bundle's config.json; writes FAKE_PID to the
# pid file; exits with FAKE_RUNC_EXIT (default 0). FAKE_RUNC_SLEEP stalls it.
# As runc does, a create that succeeds leaves its state under --root (naming
# FAKE_PID as the init, with its start time), and delete removes it.
log="${FAKE_RUNC_LOG:?}"
{ echo "---"; for a in "$@"; do printf '%s\n' "$a"; done; } >> "$log"
cmd=""; bundle="."; pidfile=""; root=""; prev=""; id=""; detach=""
for a in "$@"; do
  case "$prev" in
    --bundle|-b) bundle="$a" ;;
    --pid-file) pidfile="$a" ;;
    --root) root="$a" ;;
  esac
  case "$a" in
    create|run|restore|delete|start|kill) [ -z "$cmd" ] && cmd="$a" ;;
    --bundle=*) bundle="${a#--bundle=}" ;;
    --detach|-d) detach=1 ;;
  esac
  prev="$a"
  id="$a"
done
if [ "$cmd" = create ] || [ "$cmd" = run ] || [ "$cmd" = restore ]; then
  cp "$bundle/config.json" "$log.config"
  [ -n "${FAKE_RUNC_SLEEP:-}" ] && sleep "$FAKE_RUNC_SLEEP"
  [ -n "$pidfile" ] && [ -n "${FAKE_PID:-}" ] && echo "$FAKE_PID" > "$pidfile"
  if [ "${FAKE_RUNC_EXIT:-0}" = 0 ] && [ -n "$root" ] && [ -n "${FAKE_PID:-}" ] \
    && { [ "$cmd" != run ] || [ -n "$detach" ]; }; then
    # Field 22 of /proc/PID/stat, counted after the command's closing parenthesis.
    start=$(sed 's/.*) //' "/proc/$FAKE_PID/stat" | cut -d' ' -f20)
    mkdir -p "$root/$id"
    printf '{"init_process_pid":%s,"init_process_start":%s,"config":{"labels":["bundle=%s"]}}' \
      "$FAKE_PID" "${start:-0}" "$bundle" > "$root/$id/state.json"
  fi
fi
if [ "$cmd" = delete ] && [ -n "$root" ] && [ -n "$id" ]; then
  rm -rf "${root:?}/$id"
fi
exit "${FAKE_RUNC_EXIT:-0}"
