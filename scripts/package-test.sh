#!/usr/bin/env bash
# package-test.sh proves the release packages (make package-test, part of
# make test):
#   1. builds all six packages (scripts/package.sh) and prints their sizes;
#   2. inspects them: dpkg-deb -I/-c and rpm -qp: metadata, files, modes,
#      owners, conffiles, scripts, static binaries, the pinned checksums;
#   3. runs the arm64 and armhf binaries under qemu-user: version, config
#      check on the packaged config, modem info against bin/modemsim (the
#      plugin runs under qemu too);
#   4. as root, installs the amd64 .deb on this machine (CI's is a throwaway
#      Debian machine; systemd is not running there, as in a chroot or a
#      container): files, owners, modes, systemd-analyze verify and
#      security, the installed agent against modemsim with a spool, an
#      upgrade to a rebuilt package with another version (config edits and
#      spool kept), remove, purge, and nothing left.
# Tools come from scripts/deps.sh (make deps).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
started=$SECONDS
GO=${GO:-go}
out=dist
work=$(mktemp -d /tmp/cellgate-package-test.XXXXXX)
pids=()
installed=

say() { echo "package-test: $*"; }
fail() {
	echo "package-test: FAIL: $*" >&2
	exit 1
}

cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "$installed" ] && dpkg-query -W cellgate >/dev/null 2>&1; then
		say "purging the cellgate this test installed"
		dpkg --purge cellgate >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT

# shellcheck source=scripts/package-test-lib.sh
. scripts/package-test-lib.sh

scripts/package.sh --out "$out"
. "$out/stage/version.env"
debver=${VERSION/-/\~}
$GO build -o "$work/modemsim" ./cmd/modemsim

for arch in amd64 arm64 armhf; do
	inspect_deb "$out/cellgate_${debver}_$arch.deb" "$arch"
done
for arch in x86_64 aarch64 armv7hl; do
	inspect_rpm "$out/cellgate-$VERSION-1.$arch.rpm" "$arch"
done
run_under_qemu arm64 qemu-aarch64 linux/arm64
run_under_qemu armhf qemu-arm linux/arm/v7

if [ "$(id -u)" -ne 0 ]; then
	say "SKIPPED the install test: it installs the .deb on this machine and needs root (CI runs as root)"
else
	install_test "$out/cellgate_${debver}_amd64.deb"
fi
say "passed in $((SECONDS - started)) s"
