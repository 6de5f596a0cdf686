#!/bin/sh
# cellgate preremove, for .deb (prerm) and .rpm (%preun).
#   deb: $1 = remove on removal; upgrade, deconfigure, failed-upgrade: the
#        package stays, nothing to do.
#   rpm: $1 = how many versions remain: 0 on erase, 1 during an upgrade.
# An upgrade leaves the service alone: postinstall restarts it.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop cellgate.service || true
fi
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable cellgate.service >/dev/null 2>&1 || true
fi
exit 0
