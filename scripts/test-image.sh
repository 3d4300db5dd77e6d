#!/usr/bin/env bash
# npm run test:image: proves the Dockerfile without any container registry.
#
#  1. builds (or reuses) a local Node.js base image: scripts/build-base-image.sh
#  2. podman build of the Dockerfile on that base (npm ci needs the npm
#     registry: the build runs with --network host)
#  3. runs the image as documented: host network, the host's /proc read-only
#     at /host/proc, read-only root filesystem, the image's non-root user,
#     every capability dropped but CAP_DAC_READ_SEARCH and CAP_SYSLOG (with
#     /dev/kmsg), no-new-privileges, default arguments
#  4. scrapes /metrics on 127.0.0.1 and checks conntrack_entries and
#     conntrack_entries_limit against the host's /proc/sys/net/netfilter and
#     conntrack_scrape_collector_success{collector="conntrack"} == 1, then
#     that every enabled collector reports success 1
# The container is always removed. Exits non-zero with a message on any failure.
#
# Needs root, podman, runc, debootstrap (apt-get install podman runc debootstrap).
# Environment: IMAGE_TAG (default localhost/conntrack-exporter:test-image),
# KEEP_IMAGE=0 to remove the built image afterwards; the base image's variables
# (NODE_VERSION, SUITE, MIRROR, FORCE) are passed on to build-base-image.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# Rootful podman as it works here: runc with cgroupfs (no systemd as PID 1 to
# ask for cgroups) and explicit rlimits (the host's do not carry over to runc).
PODMAN=(podman --runtime runc --cgroup-manager cgroupfs)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
IMAGE_TAG="${IMAGE_TAG:-localhost/conntrack-exporter:test-image}"
NAME="conntrack-exporter-test-image-$$-$RANDOM"
PROC_NF=/proc/sys/net/netfilter
KERNEL_LOCK=/tmp/conntrack-exporter-kernel-test.lock # the lock of scripts/kernel-lock.mjs

log() { printf 'test:image: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
phase_start=$SECONDS
phase() { log "$1 ($((SECONDS - phase_start)) s)"; phase_start=$SECONDS; }

[ "$(id -u)" = 0 ] || fail "needs root (rootful podman, debootstrap)"
for tool in podman runc debootstrap curl conntrack; do
  command -v "$tool" >/dev/null || fail "$tool not found (apt-get install podman runc debootstrap curl conntrack)"
done
[ -r "$PROC_NF/nf_conntrack_count" ] || modprobe nf_conntrack 2>/dev/null || true
[ -r "$PROC_NF/nf_conntrack_count" ] || fail "$PROC_NF/nf_conntrack_count missing: nf_conntrack not loaded"

own_lock=0
inserted=()
cleanup() {
  local rc=$?
  if "${PODMAN[@]}" container exists "$NAME" 2>/dev/null; then
    if [ "$rc" != 0 ]; then
      log "container logs ($NAME):"
      "${PODMAN[@]}" logs "$NAME" 2>&1 | tail -n 30 >&2 || true
    fi
    "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1 || log "warning: could not remove container $NAME"
  fi
  for p in "${inserted[@]}"; do
    conntrack -D -p udp -s 127.0.0.201 -d 127.0.0.202 --sport "$p" --dport 9 >/dev/null 2>&1 || true
  done
  if [ "$own_lock" = 1 ] && [ "$(cat "$KERNEL_LOCK/owner" 2>/dev/null)" = "$$" ]; then
    rm -rf "$KERNEL_LOCK"
  fi
  if [ "${KEEP_IMAGE:-1}" = 0 ]; then "${PODMAN[@]}" rmi "$IMAGE_TAG" >/dev/null 2>&1 || true; fi
  if [ "$rc" = 0 ]; then
    log "PASS in $((SECONDS - total_start)) s"
    echo "image: 1 passed, 0 failed"
  else
    echo "image: 0 passed, 1 failed"
  fi
}
total_start=$SECONDS
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. base image --------------------------------------------------------
base="$(bash scripts/build-base-image.sh)" || fail "could not build the base image"
phase "base image $base"

# --- 2. image --------------------------------------------------------------
# A TLS-intercepting proxy's CA (as on this machine) reaches npm ci as a
# build secret, never as a layer.
secret=()
ca="${NODE_EXTRA_CA_CERTS:-}"
[ -n "$ca" ] || ca="$(npm config get cafile 2>/dev/null || true)"
if [ -n "$ca" ] && [ "$ca" != null ] && [ "$ca" != undefined ] && [ -s "$ca" ]; then
  secret=(--secret "id=npm_ca,src=$ca")
fi
version="$(node -p 'require("./package.json").version')"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
old_id="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE_TAG" 2>/dev/null || true)"
"${PODMAN[@]}" build --network host "${ULIMITS[@]}" "${secret[@]}" \
  --build-arg "NODE_IMAGE=$base" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$IMAGE_TAG" -f Dockerfile . >/tmp/"$NAME".build.log 2>&1 ||
  { tail -n 40 /tmp/"$NAME".build.log >&2; rm -f /tmp/"$NAME".build.log; fail "podman build failed"; }
rm -f /tmp/"$NAME".build.log
new_id="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE_TAG")"
# The previous build of this tag, now untagged, is ours to remove.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ] &&
  [ -z "$("${PODMAN[@]}" image inspect --format '{{join .RepoTags ","}}' "$old_id" 2>/dev/null)" ]; then
  "${PODMAN[@]}" rmi "$old_id" >/dev/null 2>&1 || true
fi
size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE_TAG" | awk '{printf "%.0f MB", $1/1e6}')"
phase "built $IMAGE_TAG ($size)"

inspect() { "${PODMAN[@]}" image inspect --format "$1" "$IMAGE_TAG"; }
[ "$(inspect '{{.Config.User}}')" = 65534:65534 ] || fail "image user is '$(inspect '{{.Config.User}}')', want 65534:65534"
inspect '{{json .Config.ExposedPorts}}' | grep -q '9746/tcp' || fail "image does not expose 9746/tcp"
[ "$(inspect '{{index .Labels "org.opencontainers.image.version"}}')" = "$version" ] || fail "label org.opencontainers.image.version is not $version"
[ "$(inspect '{{index .Labels "org.opencontainers.image.revision"}}')" = "$revision" ] || fail "label org.opencontainers.image.revision is not $revision"
"${PODMAN[@]}" run --rm "${ULIMITS[@]}" --network none --entrypoint conntrack "$IMAGE_TAG" --version >/dev/null 2>&1 ||
  fail "conntrack (conntrack-tools) does not run in the image"

# --- 3. run as documented -------------------------------------------------
port="$(node -e 'const s=require("node:net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
"${PODMAN[@]}" run -d --name "$NAME" "${ULIMITS[@]}" \
  --network host --read-only --read-only-tmpfs=false \
  --cap-drop all --cap-add DAC_READ_SEARCH --cap-add SYSLOG --device /dev/kmsg:/dev/kmsg:r \
  --security-opt no-new-privileges \
  -v /proc:/host/proc:ro \
  -e "CONNTRACK_EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:$port" \
  "$IMAGE_TAG" >/dev/null || fail "podman run failed"

url="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$url/healthz" 2>/dev/null && break
  [ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$NAME")" = true ] || fail "the container exited: $("${PODMAN[@]}" inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$NAME")"
  sleep 0.2
done
curl -fsS -o /dev/null "$url/healthz" || fail "$url/healthz not answering after 20 s"
phase "container $NAME serving on $url"

pid="$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$NAME")"
uids="$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")"
[ "$uids" = "65534 65534 65534 65534" ] || fail "exporter runs with uids '$uids', want 65534"
# Exactly the two capabilities added (podman makes them ambient for a non-root
# user): CAP_DAC_READ_SEARCH (bit 2) and CAP_SYSLOG (bit 34).
capeff="$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")"
[ "$capeff" = 0000000400000004 ] || fail "exporter has effective capabilities $capeff, want 0000000400000004 (DAC_READ_SEARCH, SYSLOG)"
[ "$("${PODMAN[@]}" inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$NAME")" = true ] || fail "root filesystem not read-only"
if "${PODMAN[@]}" exec "$NAME" sh -c ': >/app/probe || : >/tmp/probe' 2>/dev/null; then fail "root filesystem is writable"; fi

# --- 4. scrape and compare with the host's /proc ----------------------------
# nf_conntrack_max is global and the kernel tests change it under this lock.
deadline=$((SECONDS + 900))
while ! mkdir "$KERNEL_LOCK" 2>/dev/null; do
  owner="$(cat "$KERNEL_LOCK/owner" 2>/dev/null || true)"
  if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
    # A crashed holder: put its saved limit back, as the kernel tests do.
    saved="$(cat "$KERNEL_LOCK/saved-max" 2>/dev/null || true)"
    if [[ "$saved" =~ ^[0-9]+$ ]]; then echo "$saved" >"$PROC_NF/nf_conntrack_max"; fi
    rm -rf "$KERNEL_LOCK"
    continue
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $KERNEL_LOCK (held by pid $owner)"
  sleep 0.5
done
echo "$$" >"$KERNEL_LOCK/owner"
own_lock=1

# A few entries of our own in the host's table (inserted over netlink; no
# packet is sent), so that the count compared below is not just 0.
sport0=$((20000 + ($$ % 20000)))
for i in 0 1 2 3 4; do
  conntrack -I -p udp -s 127.0.0.201 -d 127.0.0.202 --sport $((sport0 + i)) --dport 9 -t 120 >/dev/null 2>&1 ||
    fail "conntrack -I could not add a test entry to the host's table"
  inserted+=($((sport0 + i)))
done

metric() { # $1 name with labels, as printed; $2 exposition
  awk -v m="$1" '$1 == m { print $2; found = 1; exit } END { if (!found) exit 1 }' <<<"$2"
}
ok=0
for attempt in 1 2 3 4 5; do
  count_before="$(cat "$PROC_NF/nf_conntrack_count")"
  max_before="$(cat "$PROC_NF/nf_conntrack_max")"
  body="$(curl -fsS "$url/metrics")" || fail "GET $url/metrics failed"
  count_after="$(cat "$PROC_NF/nf_conntrack_count")"
  max_after="$(cat "$PROC_NF/nf_conntrack_max")"
  success="$(metric 'conntrack_scrape_collector_success{collector="conntrack"}' "$body")" ||
    fail "no conntrack_scrape_collector_success{collector=\"conntrack\"} in /metrics"
  [ "$success" = 1 ] || fail "conntrack_scrape_collector_success{collector=\"conntrack\"} is $success, want 1"
  entries="$(metric conntrack_entries "$body")" || fail "no conntrack_entries in /metrics"
  limit="$(metric conntrack_entries_limit "$body")" || fail "no conntrack_entries_limit in /metrics"
  lo=$((count_before < count_after ? count_before : count_after))
  hi=$((count_before > count_after ? count_before : count_after))
  if [ "$max_before" = "$max_after" ] && [ "$limit" = "$max_before" ] &&
    [ "$lo" -ge "${#inserted[@]}" ] && [ "$entries" -ge "$lo" ] && [ "$entries" -le "$hi" ]; then
    ok=1
    break
  fi
  log "attempt $attempt: conntrack_entries=$entries (host $count_before..$count_after)," \
    "conntrack_entries_limit=$limit (host $max_before..$max_after); retrying"
  sleep 1
done
for p in "${inserted[@]}"; do
  conntrack -D -p udp -s 127.0.0.201 -d 127.0.0.202 --sport "$p" --dport 9 >/dev/null 2>&1 || true
done
inserted=()
rm -rf "$KERNEL_LOCK"
own_lock=0
[ "$ok" = 1 ] || fail "conntrack_entries=$entries / conntrack_entries_limit=$limit do not match the host's $PROC_NF (count $count_before..$count_after, max $max_before..$max_after)"
# Every other enabled collector works in the container too (some scan in the
# background: give them a few scrapes).
for _ in $(seq 1 20); do
  failing="$(awk '/^conntrack_scrape_collector_success\{/ && $2 != 1 { print $1 }' <<<"$body")"
  [ -z "$failing" ] && break
  sleep 0.5
  body="$(curl -fsS "$url/metrics")" || fail "GET $url/metrics failed"
done
[ -z "$failing" ] || fail "collectors failing in the container: $(echo $failing)"
grep -q "^conntrack_exporter_build_info{.*version=\"$version\"" <<<"$body" ||
  fail "conntrack_exporter_build_info does not carry version=\"$version\""
phase "scraped: conntrack_entries=$entries conntrack_entries_limit=$limit (host: $count_after, $max_after); success 1 from $(grep -c '^conntrack_scrape_collector_success{' <<<"$body") collectors"

# Graceful stop: SIGTERM, exit code 0.
"${PODMAN[@]}" stop -t 15 "$NAME" >/dev/null || fail "podman stop failed"
code="$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")"
[ "$code" = 0 ] || fail "exporter exited $code on SIGTERM, want 0"
phase "stopped with exit code 0"
