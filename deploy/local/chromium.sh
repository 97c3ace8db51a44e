#!/usr/bin/env bash
# chromium.sh up|down|status — Debian's chromium, run headless by the web console's
# browser tests (exchange/console, through chromedp), and the Noto CJK fonts its pages
# and screenshots need for Chinese. Installed with apt-get when missing. down is a no-op:
# each test starts and stops its own browser.
set -euo pipefail
SERVICE=chromium
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEBS=(chromium fonts-noto-cjk)

installed() {
	command -v chromium >/dev/null 2>&1 && dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q 'install ok installed'
}

up() {
	installed || need_debs "${DEBS[@]}"
	installed || die "chromium or fonts-noto-cjk still missing after apt-get install"
	chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1 ||
		die "chromium is installed but does not start headless: run 'chromium --headless --no-sandbox --dump-dom about:blank' to see why"
	log "ready: $(chromium --version 2>/dev/null | head -1)"
}

case "${1:-}" in
up) up ;;
down) ;;
status) installed && log "ready: $(chromium --version 2>/dev/null | head -1)" || { log "not installed"; exit 1; } ;;
*) usage_for ;;
esac
