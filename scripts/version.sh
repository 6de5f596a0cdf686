#!/usr/bin/env bash
# version.sh prints, as shell assignments for eval, what a release build
# stamps into the binaries and packages:
#   VERSION  the semantic version: $VERSION when set, else the VERSION file,
#            else the latest v* tag (without the "v")
#   COMMIT   the commit (12 hex digits), "-dirty" when tracked files differ
#   EPOCH    the commit's time in seconds ($SOURCE_DATE_EPOCH when set): the
#            build date and every file time in the packages, so a rebuild of
#            a commit is byte-identical
#   DATE     EPOCH as RFC 3339 UTC
set -euo pipefail
cd "$(dirname "$0")/.."

version=${VERSION:-}
if [ -z "$version" ] && [ -f VERSION ]; then
	version=$(tr -d ' \t\r\n' <VERSION)
fi
if [ -z "$version" ]; then
	version=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || true)
	version=${version#v}
fi
semver='^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
if ! [[ $version =~ $semver ]]; then
	echo "version.sh: no semantic version (got \"$version\"): set VERSION, write the VERSION file or tag a release v1.2.3" >&2
	exit 1
fi

if commit=$(git rev-parse --short=12 HEAD 2>/dev/null); then
	git diff --quiet HEAD -- 2>/dev/null || commit+=-dirty
	epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}
else
	commit=unknown
	epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y VERSION)}
fi
date=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

printf 'VERSION=%q\nCOMMIT=%q\nEPOCH=%q\nDATE=%q\n' "$version" "$commit" "$epoch" "$date"
