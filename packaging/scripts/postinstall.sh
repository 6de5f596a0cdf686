#!/bin/sh
# cellgate postinstall, for .deb (postinst) and .rpm (%post).
#   deb: $1 = configure, $2 = the version configured before ("" on a first
#        install); other actions (abort-upgrade, ...) do nothing here.
#   rpm: $1 = how many versions are installed now: 1 on a first install.
# systemctl and udevadm are called only where systemd and udev run: in a
# chroot or a container without them (an image build, CI) the package
# installs cleanly and the service is enabled for the first real boot.
set -e

case "$1" in
configure) if [ -z "$2" ]; then first=yes; else first=no; fi ;;
1) first=yes ;;
[0-9]*) first=no ;;
*) exit 0 ;;
esac

# warn_stale_pins: the configuration pins each plugin's SHA-256
# (plugins.sha256), and the agent refuses a plugin whose checksum differs.
# An upgrade that brings new plugin binaries while the operator keeps an
# edited /etc/cellgate/cellgate.yaml (dpkg's default, and unattended
# upgrades') leaves the old checksums there: say so, with the fix.
warn_stale_pins() {
	conf=/etc/cellgate/cellgate.yaml
	[ -f "$conf" ] || return 0
	for plugin in /usr/lib/cellgate/plugins/cellgate-plugin-*; do
		[ -f "$plugin" ] || continue
		model=${plugin##*/cellgate-plugin-}
		pinned=$(sed -n "s/^    $model: \"\{0,1\}\([0-9a-fA-F]\{64\}\)\"\{0,1\}[[:space:]]*$/\1/p" "$conf")
		[ -n "$pinned" ] || continue
		actual=$(sha256sum "$plugin" | cut -d' ' -f1)
		if [ "$pinned" != "$actual" ]; then
			echo "cellgate: $conf pins $model's plugin to $pinned, but this version installs $actual:" >&2
			echo "cellgate: the agent will refuse it. Set plugins.sha256.$model: \"$actual\" there." >&2
		fi
	done
}

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi

# The modem's stable name, dialout group and ModemManager exclusion apply
# to a modem already plugged in, without a replug or reboot.
if [ -S /run/udev/control ] && command -v udevadm >/dev/null 2>&1; then
	udevadm control --reload || true
	udevadm trigger --action=change --subsystem-match=usb --attr-match=idVendor=1e0e || true
	udevadm trigger --action=change --subsystem-match=tty || true
fi

if [ "$first" = yes ]; then
	# Enabled, not started: the agent needs the operator's device_id,
	# uplink and keys first (README: Install on a gateway). systemctl
	# enable works without a running systemd (it only makes links), so an
	# image built in a chroot boots with the service on.
	if command -v systemctl >/dev/null 2>&1; then
		systemctl enable cellgate.service >/dev/null 2>&1 || true
	fi
else
	warn_stale_pins
	if [ -d /run/systemd/system ]; then
		# The running agent (if any) moves to the new binaries. The
		# spool and the configuration are kept.
		systemctl try-restart cellgate.service || true
	fi
fi
exit 0
