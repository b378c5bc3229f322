#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the web interface's browser
# tests (app/ui_browser_test.go), unless a Chromium is on PATH already or
# ARTIFACTSTORE_CHROMIUM names one. Uses apt-get (as root, or through sudo).
set -euo pipefail
if [[ -n ${ARTIFACTSTORE_CHROMIUM:-} ]]; then
	[[ -x $ARTIFACTSTORE_CHROMIUM ]] || { echo "browser-up: ARTIFACTSTORE_CHROMIUM=$ARTIFACTSTORE_CHROMIUM is not executable" >&2; exit 1; }
	exit 0
fi
for b in chromium chromium-browser google-chrome; do
	if command -v "$b" >/dev/null; then
		exit 0
	fi
done
sudo=()
if [[ $(id -u) != 0 ]]; then
	command -v sudo >/dev/null || { echo "browser-up: chromium is missing; install it as root: apt-get install -y chromium" >&2; exit 1; }
	sudo=(sudo)
fi
echo "browser-up: installing chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
command -v chromium >/dev/null
