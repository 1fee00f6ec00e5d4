#!/usr/bin/env bash
# Rebuilds vendor/glommio from the glommio release on crates.io plus vendor/patches/glommio/*.patch
# (applied in file-name order), then either checks that vendor/glommio is exactly that tree
# (default, --check: exits 1 with a summary of the differences) or writes it there (--write).
# vendor/README.md says what the patches are and how to change one.
#
# Needs: curl (or GLOMMIO_CRATE=path/to/glommio-0.9.0.crate, e.g. offline), sha256sum, tar, git
# (only its `git apply`, outside any repository).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION=0.9.0
# sha256 of glommio-0.9.0.crate, as the crates.io registry index records it (its "cksum" field):
# what we patch is the released crate and nothing else.
SHA256=e1f8bc1fce949d18098dc0a4e861314e40351a0144ebf61e59bdb5254a2273b2
# The API address redirects to the static one; the static one first saves the redirect (and is the
# host cargo downloads from, so it is reachable wherever a build can fetch crates).
URLS=(
    "https://static.crates.io/crates/glommio/glommio-$VERSION.crate"
    "https://crates.io/api/v1/crates/glommio/$VERSION/download"
)
# What the vendored tree leaves out of the release: glommio's benchmarks and examples, which corelb
# never builds (they pull in dev-dependencies).
DROPPED=(benches examples)
TARGET="$REPO_DIR/vendor/glommio"
PATCH_DIR="$REPO_DIR/vendor/patches/glommio"

usage() {
    echo "usage: $0 [--check | --write]" >&2
    echo "  --check  (default) exit 1 if vendor/glommio differs from glommio $VERSION + patches" >&2
    echo "  --write  replace vendor/glommio with glommio $VERSION + patches" >&2
}

mode="check"
case "${1:-}" in
    "" | --check) mode="check" ;;
    --write) mode="write" ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage
        exit 2
        ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/vendor-glommio.XXXXXX")"
trap 'rm -rf "$work"' EXIT

crate="$work/glommio-$VERSION.crate"
if [[ -n ${GLOMMIO_CRATE:-} ]]; then
    cp "$GLOMMIO_CRATE" "$crate"
else
    fetched=""
    for url in "${URLS[@]}"; do
        if curl -fsSL --retry 2 --connect-timeout 20 --max-time 120 -o "$crate" "$url"; then
            fetched=$url
            break
        fi
    done
    if [[ -z $fetched ]]; then
        echo "error: could not download glommio $VERSION from crates.io (tried: ${URLS[*]})." >&2
        echo "This check needs network access to crates.io, or GLOMMIO_CRATE=path/to/glommio-$VERSION.crate." >&2
        exit 1
    fi
fi
actual="$(sha256sum "$crate" | cut -d' ' -f1)"
if [[ $actual != "$SHA256" ]]; then
    echo "error: glommio-$VERSION.crate has sha256 $actual, expected $SHA256 (the registry's checksum)" >&2
    exit 1
fi

tar -xzf "$crate" -C "$work"
tree="$work/glommio-$VERSION"
for d in "${DROPPED[@]}"; do
    rm -rf "${tree:?}/$d"
done
# cargo writes this marker into every crate it unpacks; the vendored tree was copied from there.
printf '{"v":1}' > "$tree/.cargo-ok"

shopt -s nullglob
patches=("$PATCH_DIR"/*.patch)
if ((${#patches[@]} == 0)); then
    echo "error: no patches in $PATCH_DIR" >&2
    exit 1
fi
for p in "${patches[@]}"; do
    # The ceiling keeps git from taking a repository above the work directory for the tree's own:
    # `git apply` then patches plain files, relative to the current directory.
    if ! (cd "$tree" && GIT_CEILING_DIRECTORIES="$work" git apply "$p"); then
        echo "error: ${p#"$REPO_DIR"/} does not apply to glommio $VERSION with the patches before it" >&2
        exit 1
    fi
done

if [[ $mode == write ]]; then
    rm -rf "$TARGET"
    cp -a "$tree" "$TARGET"
    # The release's files carry their 2006 timestamps: older than any build, so cargo would keep a
    # glommio built from what was there before. Stamped now, the next build recompiles it.
    find "$TARGET" -exec touch {} +
    echo "wrote vendor/glommio: glommio $VERSION + ${#patches[@]} patches"
    exit 0
fi

# Executable bits matter too (git records them).
exec_bits() { (cd "$1" && find . -path ./target -prune -o -type f -perm -u+x -print | LC_ALL=C sort); }
ok=1
differences="$(diff -rq --exclude=target "$tree" "$TARGET" 2>&1)" || ok=0
modes="$(diff <(exec_bits "$tree") <(exec_bits "$TARGET") 2>&1)" || ok=0
if ((ok == 0)); then
    echo "vendor/glommio differs from glommio $VERSION + vendor/patches/glommio:" >&2
    if [[ -n $differences ]]; then
        echo "${differences//$work\//release+patches:}" >&2
        echo "first lines of the diff (release+patches -> vendor/glommio):" >&2
        (cd "$work" && diff -ru --exclude=target "glommio-$VERSION" "$TARGET" | head -n 60) >&2 || true
    fi
    if [[ -n $modes ]]; then
        echo "executable bits differ (< release+patches, > vendor/glommio):" >&2
        echo "$modes" >&2
    fi
    echo "Make the change a patch in vendor/patches/glommio (see vendor/README.md), then run $0 --write." >&2
    exit 1
fi
echo "vendor/glommio matches glommio $VERSION + ${#patches[@]} patches (${patches[*]##*/})"
