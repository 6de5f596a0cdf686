#!/usr/bin/env bash
# proto.sh regenerates the Go code in sdk/proto from sdk/proto/*.proto with
# pinned generators, so the committed files can be reproduced byte for byte:
# the generated headers name the protoc and generator versions, so any other
# version is refused rather than producing a silently different file.
#
# Environment (both optional, used by the sdk regeneration test):
#   PROTO_OUT        where to write the generated files (default: the repo root,
#                    i.e. next to the .proto files, which is what `make proto` does)
#   CELLGATE_TOOLS   where the pinned generators are installed (default: .tools)
set -euo pipefail

PROTOC_VERSION="3.21.12"
PROTOC_GEN_GO_VERSION="v1.36.12"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.0"

repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="${CELLGATE_TOOLS:-$repo/.tools}"
out="${PROTO_OUT:-$repo}"
bin="$tools/bin"

die() { echo "proto.sh: $*" >&2; exit 1; }

command -v protoc >/dev/null 2>&1 ||
  die "protoc not found; run 'make deps' (installs Debian's protobuf-compiler $PROTOC_VERSION)"
have="$(protoc --version | awk '{print $2}')"
[ "$have" = "$PROTOC_VERSION" ] ||
  die "protoc $have found, but the committed code was generated with protoc $PROTOC_VERSION"

# install_tool PKG VERSION BINARY WANT puts PKG@VERSION into $bin unless the
# binary there already reports WANT, so reruns cost nothing.
install_tool() {
  local pkg="$1" version="$2" name="$3" want="$4"
  if [ -x "$bin/$name" ] && [ "$("$bin/$name" --version 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  mkdir -p "$bin"
  GOBIN="$bin" go install "$pkg@$version" ||
    die "could not install $pkg@$version into $bin"
  [ "$("$bin/$name" --version 2>/dev/null)" = "$want" ] ||
    die "$bin/$name does not report '$want' after installing $pkg@$version"
}
install_tool google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION" \
  protoc-gen-go "protoc-gen-go $PROTOC_GEN_GO_VERSION"
install_tool google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION" \
  protoc-gen-go-grpc "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"

mkdir -p "$out"
cd "$repo"
# Paths are given relative to the repo root so the descriptor's registered
# file name (sdk/proto/...) and the generated "source:" lines do not depend
# on where the repo is checked out.
protos=(sdk/proto/*.proto)
protoc \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  -I . \
  --go_out="$out" --go_opt=paths=source_relative \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
  "${protos[@]}"
