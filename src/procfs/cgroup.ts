/**
 * Kubernetes pod and container identity from `/proc/<pid>/cgroup`.
 *
 * The kubelet puts every container in a cgroup whose path carries the pod's
 * UID, and the container runtime names the leaf after the container ID. The
 * spelling depends on three choices, all of which appear in the wild:
 *
 * - cgroup v1 (`N:controllers:/path`, one line per hierarchy) or v2 (`0::/path`);
 * - the kubelet's cgroup driver: cgroupfs
 *   (`/kubepods/burstable/pod<uid>/<id>`) or systemd
 *   (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/<leaf>.scope`);
 * - the runtime's leaf name: containerd (`cri-containerd-<id>.scope` or a bare
 *   `<id>`), CRI-O (`crio-<id>.scope`, `crio-<id>`), Docker (`docker-<id>.scope`,
 *   a bare `<id>`, or `/docker/<id>` outside Kubernetes).
 *
 * Paths are matched by segment, anywhere in the path, because a reader in its
 * own cgroup namespace sees them relative to its root (`/../../kubepods-…`),
 * and kind or kubelet-in-a-slice setups add prefixes (`/kubelet.slice/kubelet-kubepods.slice/…`).
 */

export interface CgroupIdentity {
  /** Pod UID as Kubernetes prints it (dashed), or undefined outside a pod. */
  readonly podUid?: string;
  /** 64-hex container ID of the process's container, or undefined. */
  readonly containerId?: string;
}

/** A pod UID: dashed or (systemd) underscored UUID, or the 32-hex config hash of a static pod. */
const POD_SEGMENT =
  /(?:^|-)pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?$/;

/** The leaf a runtime names after its container: optional runtime prefix, 64 hex digits, optional `.scope`. */
const CONTAINER_SEGMENT = /^(?:(?:cri-containerd|crio|docker|libpod)-)?([0-9a-f]{64})(?:\.scope)?$/;

/** Extracts pod UID and container ID from one cgroup path. Pure. */
export function parseCgroupPath(path: string): CgroupIdentity {
  let podUid: string | undefined;
  let containerId: string | undefined;
  for (const segment of path.split('/')) {
    const pod = POD_SEGMENT.exec(segment);
    if (pod) podUid = (pod[1] as string).replace(/_/g, '-');
    const ctr = CONTAINER_SEGMENT.exec(segment);
    if (ctr) containerId = ctr[1] as string;
  }
  const out: { podUid?: string; containerId?: string } = {};
  if (podUid !== undefined) out.podUid = podUid;
  if (containerId !== undefined) out.containerId = containerId;
  return out;
}

/**
 * Parses `/proc/<pid>/cgroup` (v1, v2 or hybrid) into the pod and container
 * the process belongs to. Every hierarchy of one process names the same
 * container, so the first line that identifies a pod wins, then the first that
 * names a container. Pure; unknown layouts yield `{}` rather than an error.
 */
export function parseCgroupFile(text: string): CgroupIdentity {
  let best: CgroupIdentity = {};
  for (const line of text.split('\n')) {
    // hierarchy-ID:controller-list:path; the path itself may contain ':' (never in practice, but be safe).
    const first = line.indexOf(':');
    const second = first < 0 ? -1 : line.indexOf(':', first + 1);
    if (second < 0) continue;
    const id = parseCgroupPath(line.slice(second + 1).trim());
    if (id.podUid !== undefined && id.containerId !== undefined) return id;
    if (id.podUid !== undefined && best.podUid === undefined) best = id;
    else if (id.containerId !== undefined && best.podUid === undefined && best.containerId === undefined) best = id;
  }
  return best;
}
