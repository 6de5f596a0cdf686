#!/bin/sh
# cellgate postremove, for .deb (postrm) and .rpm (%postun).
#   deb: $1 = remove (configuration and spool kept), purge (both deleted),
#        or upgrade, failed-upgrade, abort-install, ... (nothing to do).
#   rpm: $1 = how many versions remain: 0 on erase (rpm has no purge: an
#        edited configuration is kept as .rpmsave, the spool stays), 1
#        during an upgrade.
set -e

case "$1" in
remove | purge | 0) ;;
*) exit 0 ;;
esac

if [ "$1" = purge ]; then
	# dpkg deletes the conffile; this deletes everything else cellgate or
	# its operator put there: keys, the spool, refused batches.
	# StateDirectory= with DynamicUser= keeps the state in
	# /var/lib/private/cellgate behind a /var/lib/cellgate link.
	rm -rf /etc/cellgate /var/lib/cellgate /var/lib/private/cellgate
fi

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ -S /run/udev/control ] && command -v udevadm >/dev/null 2>&1; then
	udevadm control --reload || true
fi
exit 0
