#!/usr/bin/env bash
# package.sh builds cellgate's release packages: for each architecture,
# static (CGO_ENABLED=0), stripped (-s -w) and reproducible (-trimpath, the
# commit's time) binaries stamped with the version (scripts/version.sh),
# then a .deb and an .rpm with nfpm, named as nfpm names them:
#   cellgate_<version>_{amd64,arm64,armhf}.deb
#   cellgate-<version>-1.{x86_64,aarch64,armv7hl}.rpm
# nfpm is pinned and built once for the host into .tools/, never for the
# target architecture.
#
# Usage: scripts/package.sh [--arch "amd64 arm64 arm"] [--formats "deb rpm"] [--out dist]
# VERSION=1.2.3 overrides the VERSION file. The staged files stay in
# <out>/stage/linux_<arch>/, and the stamps in <out>/stage/version.env, for
# scripts/package-test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM_VERSION=v2.45.2
arches="amd64 arm64 arm"
formats="deb rpm"
out=dist
while [ $# -gt 0 ]; do
	case "$1" in
	--arch) arches=$2; shift 2 ;;
	--formats) formats=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	*) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
GO=${GO:-go}
stamps=$(scripts/version.sh)
eval "$stamps"
export SOURCE_DATE_EPOCH=$EPOCH
buildinfo=github.com/cellgate/cellgate/internal/buildinfo

# nfpm prints the path of the pinned nfpm, building it for the host first.
nfpm() {
	local dir=$PWD/.tools/nfpm-$NFPM_VERSION
	if [ ! -x "$dir/nfpm" ]; then
		echo "package: building nfpm $NFPM_VERSION for the host" >&2
		GOBIN=$dir GOOS=$($GO env GOHOSTOS) GOARCH=$($GO env GOHOSTARCH) GOARM= CGO_ENABLED=0 GOFLAGS= \
			$GO install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" >&2
	fi
	echo "$dir/nfpm"
}

# build_binaries GOARCH STAGE: cellgate and the plugins, named as installed.
# Only cellgate gets the version stamps: -X changes a binary's build ID even
# where the symbol is absent, and a plugin whose bytes change with every
# version would change the pinned checksums in the conffile every release.
build_binaries() {
	local goarch=$1 stage=$2 goarm=
	[ "$goarch" = arm ] && goarm=7
	local build=(env CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" GOARM="$goarm" "$GO" build -trimpath -buildvcs=false)
	"${build[@]}" -ldflags "-s -w -X $buildinfo.version=$VERSION -X $buildinfo.commit=$COMMIT -X $buildinfo.date=$DATE" \
		-o "$stage/cellgate" ./cmd/cellgate
	"${build[@]}" -ldflags "-s -w" -o "$stage/" ./plugins/sim7600 ./plugins/sim7800
	mv "$stage/sim7600" "$stage/cellgate-plugin-sim7600"
	mv "$stage/sim7800" "$stage/cellgate-plugin-sim7800"
}

# packaged_config STAGE: configs/cellgate.yaml with the SHA-256 of the
# plugins in STAGE, so plugin pinning is on out of the box.
packaged_config() {
	local stage=$1 s7600 s7800
	s7600=$(sha256sum "$stage/cellgate-plugin-sim7600" | cut -d' ' -f1)
	s7800=$(sha256sum "$stage/cellgate-plugin-sim7800" | cut -d' ' -f1)
	awk -v s7600="$s7600" -v s7800="$s7800" '
		$0 == "  sha256: {}" && !done {
			print "  # Set by the package: the checksums of the plugins it installs."
			print "  sha256:"
			print "    sim7600: \"" s7600 "\""
			print "    sim7800: \"" s7800 "\""
			done = 1
			next
		}
		{ print }
		END { if (!done) { print "package: no \"  sha256: {}\" line in configs/cellgate.yaml" > "/dev/stderr"; exit 1 } }
	' configs/cellgate.yaml >"$stage/cellgate.yaml"
}

# third_party_licenses GOARCH FILE: the license of every module compiled
# into the binaries, and Go's own (the binaries are statically linked).
third_party_licenses() {
	local goarch=$1 file=$2
	{
		echo "cellgate's binaries contain the following code, each under its own license."
		printf '\n==== Go standard library and runtime %s\n\n' "$($GO env GOVERSION)"
		cat "$($GO env GOROOT)/LICENSE"
		GOOS=linux GOARCH=$goarch $GO list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/cellgate ./plugins/sim7600 ./plugins/sim7800 |
			sort -u | while read -r path version dir; do
			printf '\n==== %s %s\n\n' "$path" "$version"
			found=
			for f in "$dir"/LICENSE* "$dir"/LICENCE* "$dir"/COPYING* "$dir"/NOTICE*; do
				[ -f "$f" ] && { cat "$f"; found=1; }
			done
			[ -n "$found" ] || { echo "package: $path has no license file" >&2; exit 1; }
		done
	} >"$file"
}

nfpm_arch() { case "$1" in arm) echo arm7 ;; *) echo "$1" ;; esac; }

# sizes FILE...: each file's size, flagging any over 15 MB (a gateway
# downloads them over cellular).
sizes() {
	local f size
	for f in "$@"; do
		size=$(stat -c %s "$f")
		printf 'package: %10d bytes  %s%s\n' "$size" "$f" "$([ "$size" -gt 15000000 ] && echo '  (over 15 MB: see packaging/README.md)')"
	done
}

NFPM=$(nfpm)
mkdir -p "$out/stage"
# Man pages and completion come from the command tree, the same for every
# architecture: generated once on the host, copied into each stage.
$GO run ./cmd/cellgate/gendoc -out "$out/stage/doc" >/dev/null
# What this build stamped, for scripts/package-test.sh to check against.
echo "$stamps" >"$out/stage/version.env"
echo "package: cellgate $VERSION (commit $COMMIT, $DATE)"
binaries=() jobs=()
for arch in $arches; do
	stage=$out/stage/linux_$arch
	rm -rf "$stage" && mkdir -p "$stage"
	build_binaries "$arch" "$stage"
	packaged_config "$stage"
	cp -R "$out/stage/doc/man" "$out/stage/doc/completion" "$stage/"
	third_party_licenses "$arch" "$stage/THIRD-PARTY-LICENSES"
	binaries+=("$stage/cellgate" "$stage/cellgate-plugin-sim7600" "$stage/cellgate-plugin-sim7800")
	# nfpm's xz runs on one core for ~15 s a package: all in parallel.
	for f in $formats; do
		STAGE=$stage NFPM_ARCH=$(nfpm_arch "$arch") VERSION=$VERSION \
			"$NFPM" package --config packaging/nfpm.yaml --packager "$f" --target "$out/" >"$stage/nfpm-$f.log" 2>&1 &
		jobs+=("$!:$stage/nfpm-$f.log")
	done
done
packages=()
for j in "${jobs[@]}"; do
	if ! wait "${j%%:*}"; then
		cat "${j#*:}" >&2
		exit 1
	fi
	created=$(grep 'created package:' "${j#*:}")
	packages+=("${created##*created package: }")
done
sizes "${binaries[@]}" "${packages[@]}"
