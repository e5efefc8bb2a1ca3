#!/bin/sh
# A stand-in for runc: records its argv (one argument per line) and, on
# create/run/restore, a copy of the bundle's config.json; writes FAKE_PID to the
# pid file; exits with FAKE_RUNC_EXIT (default 0). FAKE_RUNC_SLEEP stalls it.
log="${FAKE_RUNC_LOG:?}"
{ echo "---"; for a in "$@"; do printf '%s\n' "$a"; done; } >> "$log"
cmd=""; bundle="."; pidfile=""; prev=""
for a in "$@"; do
  case "$prev" in
    --bundle|-b) bundle="$a" ;;
    --pid-file) pidfile="$a" ;;
  esac
  case "$a" in
    create|run|restore|delete|start|kill) [ -z "$cmd" ] && cmd="$a" ;;
    --bundle=*) bundle="${a#--bundle=}" ;;
  esac
  prev="$a"
done
if [ "$cmd" = create ] || [ "$cmd" = run ] || [ "$cmd" = restore ]; then
  cp "$bundle/config.json" "$log.config"
  [ -n "${FAKE_RUNC_SLEEP:-}" ] && sleep "$FAKE_RUNC_SLEEP"
  [ -n "$pidfile" ] && [ -n "${FAKE_PID:-}" ] && echo "$FAKE_PID" > "$pidfile"
fi
exit "${FAKE_RUNC_EXIT:-0}"
