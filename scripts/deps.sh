#!/usr/bin/env bash
# deps.sh installs the system packages cellgate's tests and demo need, and
# only those that are missing, so running it again is cheap and changes nothing.
set -euo pipefail

need=()
command -v openssl   >/dev/null 2>&1 || need+=(openssl)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# make bench measures the per-publish baseline with the real mosquitto_pub.
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v protoc    >/dev/null 2>&1 || need+=(protobuf-compiler)
# The remote configuration tests run the Python signer of docs/remote-config.md.
/usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1 || need+=(python3-cryptography)
# The payload tests decode batches with the Python decoder of docs/payloads.md.
/usr/bin/python3 -c 'import cbor2' >/dev/null 2>&1 || need+=(python3-cbor2)
# make package-test: run the arm64 and armhf binaries (qemu-user), read the
# .rpm packages (rpm), check the unit (systemd-analyze, in systemd) and the
# udev rule (udevadm, in udev).
command -v qemu-aarch64 >/dev/null 2>&1 && command -v qemu-arm >/dev/null 2>&1 || need+=(qemu-user)
command -v rpm             >/dev/null 2>&1 || need+=(rpm)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v udevadm         >/dev/null 2>&1 || need+=(udev)
# make package-test renders the packaged man page (man -l).
command -v man             >/dev/null 2>&1 || need+=(man-db)
# The status page's browser test drives a headless chromium (chromedp).
command -v chromium        >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "deps: need root (or sudo) to install: ${need[*]}" >&2; exit 1
  fi
fi
echo "deps: installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
