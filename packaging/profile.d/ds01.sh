# ds01: at login, show the notices `ds01 reap` left about your containers
# (a warning before an idle one is stopped), then keep them as seen.
if [ -n "${HOME:-}" ] && [ -s "$HOME/.ds01/notices" ] && [ ! -L "$HOME/.ds01/notices" ]; then
    cat "$HOME/.ds01/notices"
    cat "$HOME/.ds01/notices" >> "$HOME/.ds01/notices.seen" 2>/dev/null
    : > "$HOME/.ds01/notices"
fi
