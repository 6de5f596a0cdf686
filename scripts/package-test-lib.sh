# shellcheck shell=bash
# The steps of scripts/package-test.sh, sourced by it: it sets GO, out,
# work, VERSION, COMMIT, DATE, debver and the say, fail and pids helpers.

# The files every package holds: mode, owner and path.
expected_files="-rw-r--r-- root/root ./etc/cellgate/cellgate.yaml
-rwxr-xr-x root/root ./usr/bin/cellgate
-rwxr-xr-x root/root ./usr/lib/cellgate/plugins/cellgate-plugin-sim7600
-rwxr-xr-x root/root ./usr/lib/cellgate/plugins/cellgate-plugin-sim7800
-rw-r--r-- root/root ./usr/lib/systemd/system/cellgate.service
-rw-r--r-- root/root ./usr/lib/udev/rules.d/99-cellgate-modem.rules
-rw-r--r-- root/root ./usr/share/bash-completion/completions/cellgate
-rw-r--r-- root/root ./usr/share/doc/cellgate/LICENSE
-rw-r--r-- root/root ./usr/share/doc/cellgate/THIRD-PARTY-LICENSES
-rw-r--r-- root/root ./usr/share/doc/cellgate/changelog.Debian.gz
-rw-r--r-- root/root ./usr/share/doc/cellgate/copyright
-rw-r--r-- root/root ./usr/share/fish/vendor_completions.d/cellgate.fish
-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_cellgate"

# check_man_list WHAT LISTING: LISTING (mode owner path lines) holds one
# root-owned 0644 ./usr/share/man/man1/NAME.1.gz per page gendoc wrote.
check_man_list() {
	local what=$1 listing=$2 want got
	want=$(cd "$out/stage/doc/man/man1" && ls | sed 's|^|-rw-r--r-- root/root ./usr/share/man/man1/|' | sort -k3)
	got=$(grep ' \./usr/share/man/' <<<"$listing" || true)
	[ -n "$want" ] && grep -q '/cellgate\.1\.gz$' <<<"$want" || fail "gendoc wrote no cellgate.1.gz in $out/stage/doc/man/man1"
	[ "$got" = "$want" ] || fail "$what: man pages differ from the generated ones:$(diff <(echo "$want") <(echo "$got"))"
}

# check_man ROOT WHAT: the packaged man pages are whole gzip files and
# cellgate(1) renders with its commands and environment.
check_man() {
	local root=$1 what=$2 page text
	for page in "$root"/usr/share/man/man1/*.1.gz; do
		gzip -t "$page" || fail "$what: $page is not a whole gzip file"
	done
	command -v man >/dev/null || fail "man not found: run make deps"
	text=$(MANWIDTH=100 man -l "$root/usr/share/man/man1/cellgate.1.gz" 2>&1) || fail "$what: man -l cellgate.1.gz: $text"
	for want in "cellgate - An edge agent" "cellgate-status(1)" "CELLGATE_" "Environment"; do
		grep -qF -- "$want" <<<"$text" || fail "$what: man cellgate does not show \"$want\""
	done
}

# The marker package-test writes into the installed configuration: it tells
# a leftover of an interrupted run from an operator's installation.
marker="# package-test: an operator's edit, kept across the upgrade"

# inspect_deb DEB ARCH: control fields, conffiles, maintainer scripts,
# files and modes, static binaries and the pinned plugin checksums.
inspect_deb() {
	local deb=$1 arch=$2 ctl=$work/ctl-$2 root=$work/root-$2
	[ -f "$deb" ] || fail "$deb was not built"
	local info
	info=$(dpkg-deb -I "$deb")
	for field in "Package: cellgate" "Version: $debver" "Architecture: $arch" "Section: net" \
		"Priority: optional" "Recommends: ca-certificates" "Maintainer: cellgate maintainers"; do
		grep -qx " $field" <<<"$info" || fail "$deb: no \"$field\" in its control file"
	done
	! grep -q "^ Depends:" <<<"$info" || fail "$deb depends on something; its binaries are static"
	mkdir -p "$ctl" && dpkg-deb -e "$deb" "$ctl"
	[ "$(cat "$ctl/conffiles")" = /etc/cellgate/cellgate.yaml ] || fail "$deb: conffiles are $(cat "$ctl/conffiles")"
	for s in postinst:postinstall prerm:preremove postrm:postremove; do
		[ -x "$ctl/${s%%:*}" ] && cmp -s "$ctl/${s%%:*}" "packaging/scripts/${s#*:}.sh" ||
			fail "$deb: ${s%%:*} is not packaging/scripts/${s#*:}.sh, executable"
	done
	local files
	files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub("^0/0$", "root/root", $2); print $1, $2, $6 }' | sort -k3)
	check_man_list "$deb" "$files"
	files=$(grep -v ' \./usr/share/man/' <<<"$files")
	[ "$files" = "$expected_files" ] || fail "$deb: files differ from the expected:$(diff <(echo "$expected_files") <(echo "$files"))"
	[ -z "$(dpkg-deb -c "$deb" | awk '$1 ~ /^d/ && ($1 != "drwxr-xr-x" || $2 != "root/root")')" ] ||
		fail "$deb: a directory is not root-owned 0755"
	mkdir -p "$root" && dpkg-deb -x "$deb" "$root"
	check_tree "$root" "$deb"
	check_man "$root" "$deb"
	say "$deb: $(stat -c %s "$deb") bytes; metadata, conffiles, scripts, files, modes, static binaries, pinned checksums, man pages ok"
}

# check_tree ROOT WHAT: the binaries under ROOT are static, trimmed and
# stripped release builds, and the packaged config pins the plugins there.
check_tree() {
	local root=$1 what=$2 b m sum
	for b in usr/bin/cellgate usr/lib/cellgate/plugins/cellgate-plugin-sim7600 usr/lib/cellgate/plugins/cellgate-plugin-sim7800; do
		m=$($GO version -m "$root/$b")
		for want in "CGO_ENABLED=0" "-trimpath=true"; do
			grep -qF -- "$want" <<<"$m" || fail "$what: $b was not built with $want"
		done
		m=$($GO tool nm "$root/$b" 2>&1 || true)
		grep -q "no symbols" <<<"$m" || fail "$what: $b is not stripped (-s -w)"
	done
	for m in sim7600 sim7800; do
		sum=$(sha256sum "$root/usr/lib/cellgate/plugins/cellgate-plugin-$m" | cut -d' ' -f1)
		grep -qx "    $m: \"$sum\"" "$root/etc/cellgate/cellgate.yaml" ||
			fail "$what: the packaged config does not pin cellgate-plugin-$m to $sum"
	done
	grep -qx "  port: /dev/cellgate-modem" "$root/etc/cellgate/cellgate.yaml" ||
		fail "$what: the packaged config's modem.port is not /dev/cellgate-modem"
}

# inspect_rpm RPM ARCH: the same, as rpm reads it.
inspect_rpm() {
	local rpm=$1 arch=$2
	[ -f "$rpm" ] || fail "$rpm was not built"
	[ "$(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}' "$rpm" 2>/dev/null)" = "cellgate $debver 1 $arch Apache-2.0" ] ||
		fail "$rpm: name, version, release, arch or license: $(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}' "$rpm")"
	local files want
	files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} .%{FILENAMES}\n]' "$rpm" 2>/dev/null | grep -v '^d' | sort -k3)
	check_man_list "$rpm" "$files"
	files=$(grep -v ' \./usr/share/man/' <<<"$files")
	# rpm-based systems look for zsh completion in site-functions.
	want=$(grep -v changelog.Debian.gz <<<"$expected_files" | sed 's|/zsh/vendor-completions/|/zsh/site-functions/|')
	[ "$files" = "$want" ] || fail "$rpm: files differ from the expected:$(diff <(echo "$want") <(echo "$files"))"
	[ "$(rpm -qpc "$rpm" 2>/dev/null)" = /etc/cellgate/cellgate.yaml ] || fail "$rpm: config files: $(rpm -qpc "$rpm")"
	grep -qx "cn /etc/cellgate/cellgate.yaml" <<<"$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null)" ||
		fail "$rpm: /etc/cellgate/cellgate.yaml is not %config(noreplace)"
	[ "$(rpm -qp --recommends "$rpm" 2>/dev/null)" = ca-certificates ] || fail "$rpm: recommends $(rpm -qp --recommends "$rpm")"
	[ -z "$(rpm -qpR "$rpm" 2>/dev/null | grep -v '^rpmlib(\|^/bin/sh$' || true)" ] || fail "$rpm requires $(rpm -qpR "$rpm")"
	local scripts
	scripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
	for s in "postinstall scriptlet" "preuninstall scriptlet" "postuninstall scriptlet"; do
		grep -q "^$s" <<<"$scripts" || fail "$rpm has no $s"
	done
	grep -q "^\* .* - $debver" <<<"$(rpm -qp --changelog "$rpm" 2>/dev/null)" || fail "$rpm has no changelog entry for $debver"
	say "$rpm: $(stat -c %s "$rpm") bytes; metadata, files, modes, config, scripts, changelog ok"
}

# start_modem LINK: an emulated SIM7600 on a pty linked at LINK; sets
# modem_pid.
start_modem() {
	local link=$1
	"$work/modemsim" --model sim7600 --baud -1 --link "$link" >"$link.log" 2>&1 &
	modem_pid=$!
	pids+=("$modem_pid")
	for _ in $(seq 100); do
		[ -e "$link" ] && return 0
		sleep 0.1
	done
	cat "$link.log" >&2
	fail "modemsim did not create $link"
}

stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# run_under_qemu DEBARCH QEMU PLATFORM: the packaged binaries of DEBARCH,
# each run by qemu-user: version, config check, and modem info with the
# plugin under qemu too (a wrapper in --plugin-dir execs it through qemu,
# as binfmt_misc would).
run_under_qemu() {
	local arch=$1 qemu=$2 platform=$3 root=$work/root-$1 got
	command -v "$qemu" >/dev/null || fail "$qemu not installed: run make deps"
	for v in version --version; do
		got=$("$qemu" "$root/usr/bin/cellgate" "$v")
		[ "$got" = "cellgate $VERSION (commit $COMMIT, $DATE, $($GO env GOVERSION), $platform)" ] ||
			fail "$arch: cellgate $v says \"$got\""
	done
	# The packaged config names files under /etc and /usr/lib, which config
	# check opens: point them at this extracted root (the plugins, whose
	# pinned SHA-256 it verifies) and at a fresh PKI, as an operator's
	# provisioning would.
	mkdir -p "$work/pki-$arch"
	make_pki "$work/pki-$arch"
	CELLGATE_PLUGINS__DIR=$root/usr/lib/cellgate/plugins CELLGATE_TLS__CA=$work/pki-$arch/ca.pem \
		CELLGATE_TLS__CERT=$work/pki-$arch/client.pem CELLGATE_TLS__KEY=$work/pki-$arch/client.key \
		"$qemu" "$root/usr/bin/cellgate" config check --config "$root/etc/cellgate/cellgate.yaml" >"$work/check-$arch.out" 2>"$work/check-$arch.err" ||
		fail "$arch: config check of the packaged config: $(cat "$work/check-$arch.err")"
	[ ! -s "$work/check-$arch.err" ] || fail "$arch: config check warns: $(cat "$work/check-$arch.err")"
	mkdir -p "$work/plugins-$arch"
	printf '#!/bin/sh\nexec %s %s "$@"\n' "$(command -v "$qemu")" "$root/usr/lib/cellgate/plugins/cellgate-plugin-sim7600" >"$work/plugins-$arch/cellgate-plugin-sim7600"
	chmod +x "$work/plugins-$arch/cellgate-plugin-sim7600"
	start_modem "$work/ttyUSB2-$arch"
	timeout 120 "$qemu" "$root/usr/bin/cellgate" modem info --model sim7600 --port "$work/ttyUSB2-$arch" \
		--plugin-dir "$work/plugins-$arch" --json >"$work/info-$arch.json" 2>"$work/info-$arch.err" ||
		fail "$arch: modem info under qemu: $(cat "$work/info-$arch.err")"
	stop "$modem_pid"
	grep -q '"model": *"SIMCOM_SIM7600' "$work/info-$arch.json" || fail "$arch: modem info said $(cat "$work/info-$arch.json")"
	say "$arch under $qemu: version, config check (no warning) and modem info against modemsim ok"
}

# refuse_foreign_install ends the test if cellgate is installed here and
# not by an earlier, interrupted run of this test; a leftover is purged.
refuse_foreign_install() {
	dpkg-query -W cellgate >/dev/null 2>&1 || return 0
	if grep -qxF "$marker" /etc/cellgate/cellgate.yaml 2>/dev/null ||
		! grep -q ' c /etc/cellgate/cellgate.yaml$' <<<"$(dpkg --verify cellgate 2>/dev/null || true)"; then
		say "purging the cellgate an interrupted run left installed"
		dpkg --purge cellgate >/dev/null
		return 0
	fi
	fail "cellgate is installed on this machine with an edited configuration: not touching it (purge it, or run package-test elsewhere)"
}

# install_test DEB: install, check, run, upgrade, remove, purge.
install_test() {
	local deb=$1
	command -v dpkg >/dev/null || fail "dpkg not found: the install test needs Debian"
	refuse_foreign_install
	installed=yes
	dpkg -i "$deb" >"$work/dpkg-install.log" 2>&1 || fail "dpkg -i $deb: $(cat "$work/dpkg-install.log")"
	check_installed "$debver"
	check_unit
	check_udev_rule
	provision_gateway
	run_installed_agent post
	upgrade_test
	remove_and_purge_test
}

# check_installed VERSION: files, owners and modes, the conffile, the
# enabled service and the version.
check_installed() {
	local f
	while read -r mode owner path; do
		f=${path#.}
		[ "$(stat -c '%A %U/%G' "$f")" = "$mode $owner" ] || fail "$f is $(stat -c '%A %U/%G' "$f"), want $mode $owner"
	done <<<"$expected_files"
	for f in /etc/cellgate /usr/lib/cellgate /usr/lib/cellgate/plugins /usr/share/doc/cellgate; do
		[ "$(stat -c '%A %U/%G' "$f")" = "drwxr-xr-x root/root" ] || fail "$f is $(stat -c '%A %U/%G' "$f")"
	done
	grep -q "^ /etc/cellgate/cellgate.yaml " <<<"$(dpkg-query -W -f='${Conffiles}\n' cellgate)" || fail "the configuration is not a conffile"
	[ "$(dpkg-query -W -f='${Version}' cellgate)" = "$1" ] || fail "installed version $(dpkg-query -W -f='${Version}' cellgate), want $1"
	grep -qF "cellgate ${1/\~/-} (commit " <<<"$(/usr/bin/cellgate version)" || fail "cellgate version says $(/usr/bin/cellgate version)"
	if command -v systemctl >/dev/null; then
		[ -L /etc/systemd/system/multi-user.target.wants/cellgate.service ] || fail "the service is not enabled"
	fi
	say "installed $1: files, owners, modes, conffile, enabled service, version ok"
}

# check_unit: systemd-analyze verify, and the sandbox's exposure score.
check_unit() {
	local unit=/usr/lib/systemd/system/cellgate.service score
	command -v systemd-analyze >/dev/null || fail "systemd-analyze not found: run make deps"
	systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$work/verify.log")"
	[ ! -s "$work/verify.log" ] || fail "systemd-analyze verify: $(cat "$work/verify.log")"
	score=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for cellgate.service: \([0-9.]*\).*/\1/p')
	[ -n "$score" ] || fail "systemd-analyze security gave no score"
	awk -v s="$score" 'BEGIN { exit !(s <= 2.5) }' || fail "systemd-analyze security scores the unit $score, want at most 2.5"
	check_credentials_dropin "$unit"
	say "systemd-analyze verify clean (with the credentials drop-in); security exposure $score (at most 2.5)"
}

# check_credentials_dropin UNIT: the drop-in packaging/README.md gives for
# the optional credentials (status.token_file, tls.key_password_file)
# verifies cleanly beside the installed unit, and the agent knows both
# names (cellgate --help lists the credentials it reads).
check_credentials_dropin() {
	local dir=$work/unit-dropin name
	mkdir -p "$dir/cellgate.service.d"
	cp "$1" "$dir/cellgate.service"
	printf '[Service]\nLoadCredential=status.token_file:/etc/cellgate/status.token\nLoadCredential=tls.key_password_file:/etc/cellgate/client.key.pass\n' \
		>"$dir/cellgate.service.d/credentials.conf"
	systemd-analyze verify "$dir/cellgate.service" >"$work/verify-dropin.log" 2>&1 || fail "systemd-analyze verify with the credentials drop-in: $(cat "$work/verify-dropin.log")"
	[ ! -s "$work/verify-dropin.log" ] || fail "systemd-analyze verify with the credentials drop-in: $(cat "$work/verify-dropin.log")"
	for name in status.token_file tls.key_password_file; do
		grep -qF "$name" <<<"$(/usr/bin/cellgate --help)" || fail "cellgate --help does not list the credential $name"
	done
}

# check_udev_rule: udevadm parses the installed rule without complaint.
check_udev_rule() {
	local dev
	dev=$(find /sys/class/tty -mindepth 1 -maxdepth 1 | head -1)
	if ! command -v udevadm >/dev/null || [ -z "$dev" ]; then
		say "udev rule syntax not checked: no udevadm or no tty in /sys"
		return
	fi
	udevadm test --action=add "$dev" >"$work/udev.log" 2>&1 || true
	grep -q "Reading rules file: /usr/lib/udev/rules.d/99-cellgate-modem.rules" "$work/udev.log" || fail "udevadm did not read the rule"
	! grep "99-cellgate-modem.rules:[0-9]" "$work/udev.log" || fail "udevadm finds faults in the rule"
	say "udev rule parsed by udevadm without complaint"
}

# make_pki DIR writes ca.pem, client.pem and client.key (0600) into DIR, as
# an operator provides them. The certificates are valid for 90 days, beyond
# the default tls.renew_before (30d), so neither config check nor the agent
# warns about a renewal; the CA key stays in $work.
make_pki() {
	local d=$1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 -subj /CN=package-test-ca \
		-keyout "$work/ca.key" -out "$d/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=gw-pkgtest \
		-keyout "$d/client.key" -out "$work/client.csr" 2>/dev/null
	openssl x509 -req -in "$work/client.csr" -CA "$d/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
		-CAserial "$work/ca.srl" -days 90 -out "$d/client.pem" 2>/dev/null
	chmod 0600 "$d/client.key"
}

# provision_gateway does what README's "Install on a gateway" tells an
# operator to: keys into /etc/cellgate (the client key root-only), and the
# configuration edited (with the marker).
provision_gateway() {
	local d=/etc/cellgate
	make_pki "$d"
	sed -i 's/^device_id: .*/device_id: gw-pkgtest/' "$d/cellgate.yaml"
	echo "$marker" >>"$d/cellgate.yaml"
}

# free_port prints a loopback TCP port nobody listens on.
free_port() {
	local p
	for p in $(shuf -i 20000-40000 -n 50); do
		if ! (: </dev/tcp/127.0.0.1/"$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	fail "no free port"
}

# post_readings PORT BODY: POST /v1/readings over bash's /dev/tcp (no curl
# on a fresh machine) and print the status line.
post_readings() {
	local port=$1 body=$2
	exec 3<>/dev/tcp/127.0.0.1/"$port"
	printf 'POST /v1/readings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "${#body}" "$body" >&3
	head -1 <&3 | tr -d '\r'
	exec 3<&-
}

# run_installed_agent PHASE: the installed agent, started by hand as root
# with the installed configuration (pinned plugins, modem TLS with the keys
# above) against modemsim, the uplink pointed at a closed port so readings
# stay in the spool. Before the upgrade it takes 3 readings; after it, the
# status must still count them.
run_installed_agent() {
	local phase=$1 port sport link=$work/ttyUSB2-installed log=$work/agent-$1.log agent
	port=$(free_port)
	sport=$(free_port)
	start_modem "$link"
	CELLGATE_MODEM__PORT=$link CELLGATE_UPLINK__MQTT__BROKER=mqtts://127.0.0.1:1 CELLGATE_INPUTS__HTTP__LISTEN=127.0.0.1:$port CELLGATE_STATUS__LISTEN=127.0.0.1:$sport \
		/usr/bin/cellgate run --config /etc/cellgate/cellgate.yaml >"$log" 2>&1 &
	agent=$!
	pids+=("$agent")
	for _ in $(seq 300); do
		grep -q 'msg="plugin ready"' "$log" && break
		kill -0 "$agent" 2>/dev/null || fail "the installed agent exited: $(cat "$log")"
		sleep 0.1
	done
	grep -q 'msg="plugin ready"' "$log" || fail "the installed agent's plugin (pinned, modem TLS) was not ready in 30 s: $(cat "$log")"
	if [ "$phase" = post ]; then
		[ "$(post_readings "$port" '[{"sensor":"t1","value":1},{"sensor":"t1","value":2},{"sensor":"t1","value":3}]')" = "HTTP/1.1 202 Accepted" ] ||
			fail "POST /v1/readings to the installed agent was not accepted: $(cat "$log")"
	else
		grep -qE '"pending_readings": *3[,}]' <<<"$(/usr/bin/cellgate status --addr "127.0.0.1:$sport" --json)" ||
			fail "after the upgrade the spool does not hold the 3 readings: $(/usr/bin/cellgate status --addr "127.0.0.1:$sport" --json)"
	fi
	stop "$agent"
	stop "$modem_pid"
	say "installed agent ($phase): pinned plugins started, modem provisioned, 3 readings in the spool"
}

# spool_digest prints one checksum of every file under /var/lib/cellgate.
spool_digest() {
	find /var/lib/cellgate -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

# upgrade_test rebuilds the amd64 .deb with a later version and installs
# it over the running installation: the edited configuration (a conffile)
# and the spool must survive, the binaries must be the new ones.
upgrade_test() {
	local next next_deb before
	next=$(awk -F. '{ sub(/[-+].*/, "", $3); printf "%d.%d.%d-pkgtest", $1, $2, $3 + 1 }' <<<"$VERSION")
	VERSION=$next scripts/package.sh --arch amd64 --formats deb --out "$work/upgrade" >"$work/upgrade-build.log" 2>&1 ||
		fail "building the upgrade package: $(cat "$work/upgrade-build.log")"
	next_deb=${next/-/\~}
	before=$(spool_digest)
	# As unattended upgrades do: keep the edited configuration without
	# asking. Had the plugins changed, its pins would be stale: the
	# postinst says so, and the agent run below would fail.
	dpkg -i --force-confold "$work/upgrade/cellgate_${next_deb}_amd64.deb" >"$work/dpkg-upgrade.log" 2>&1 </dev/null ||
		fail "dpkg -i of the upgrade: $(cat "$work/dpkg-upgrade.log")"
	! grep -q "cellgate: .* pins" "$work/dpkg-upgrade.log" || fail "the upgrade left stale plugin pins: $(cat "$work/dpkg-upgrade.log")"
	check_installed "$next_deb"
	check_stale_pin_warning
	grep -qxF "$marker" /etc/cellgate/cellgate.yaml && grep -qx "device_id: gw-pkgtest" /etc/cellgate/cellgate.yaml ||
		fail "the upgrade lost the operator's configuration edits"
	[ "$(spool_digest)" = "$before" ] || fail "the upgrade changed the spool"
	say "upgraded to $next_deb: configuration edits and spool kept"
	run_installed_agent upgraded
}

# check_stale_pin_warning: the postinst of an upgrade names a pin that
# does not match the installed plugin, with the checksum to set.
check_stale_pin_warning() {
	local conf=/etc/cellgate/cellgate.yaml actual warning
	cp "$conf" "$work/conf.saved"
	sed -i 's/^    sim7800: ".*"$/    sim7800: "'"$(printf '0%.0s' $(seq 64))"'"/' "$conf"
	actual=$(sha256sum /usr/lib/cellgate/plugins/cellgate-plugin-sim7800 | cut -d' ' -f1)
	warning=$(/var/lib/dpkg/info/cellgate.postinst configure 0.0.1 2>&1)
	cp "$work/conf.saved" "$conf"
	grep -qF "Set plugins.sha256.sim7800: \"$actual\"" <<<"$warning" || fail "no stale-pin warning from the postinst: $warning"
	say "the postinst of an upgrade warns about a stale plugin pin"
}

# remove_and_purge_test: remove keeps the configuration, keys and spool;
# purge leaves nothing.
remove_and_purge_test() {
	local f
	dpkg --remove cellgate >"$work/dpkg-remove.log" 2>&1 || fail "dpkg --remove: $(cat "$work/dpkg-remove.log")"
	for f in /usr/bin/cellgate /usr/lib/cellgate /usr/lib/systemd/system/cellgate.service \
		/usr/lib/udev/rules.d/99-cellgate-modem.rules /etc/systemd/system/multi-user.target.wants/cellgate.service; do
		[ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is still there after remove"
	done
	for f in /etc/cellgate/cellgate.yaml /etc/cellgate/client.key /var/lib/cellgate/spool; do
		[ -e "$f" ] || fail "remove deleted $f"
	done
	[ "$(dpkg-query -W -f='${Status}' cellgate)" = "deinstall ok config-files" ] || fail "after remove: $(dpkg-query -W -f='${Status}' cellgate)"
	dpkg --purge cellgate >"$work/dpkg-purge.log" 2>&1 || fail "dpkg --purge: $(cat "$work/dpkg-purge.log")"
	installed=
	for f in /usr/bin/cellgate /usr/lib/cellgate /usr/lib/systemd/system/cellgate.service /usr/lib/udev/rules.d/99-cellgate-modem.rules \
		/usr/share/doc/cellgate /etc/cellgate /var/lib/cellgate /var/lib/private/cellgate \
		/etc/systemd/system/multi-user.target.wants/cellgate.service; do
		[ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is still there after purge"
	done
	! dpkg-query -W cellgate >/dev/null 2>&1 || fail "dpkg still knows cellgate after purge"
	say "remove kept configuration, keys and spool; purge left nothing"
}
