#!/usr/bin/env node
// Kernel log benchmark (issue 4), against the built dist/:
//  1. lines classified per second on a realistic kern.log / kmsg mix (target ≥ 1,000,000/s);
//  2. peak RSS while following a 1 GB file backlog with --kernel-log.from-start (target ≤ 100 MB),
//     the file generated in a temp dir and deleted afterwards.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { classifyKmsgRecord, classifyLogLine } from '../dist/kernel-log/classify.js';
import { FileSource } from '../dist/kernel-log/sources/file.js';

const CLASSIFY_TARGET = 1_000_000;
const RSS_TARGET_MB = 100;
const BACKLOG_BYTES = Number(process.env.KERNEL_LOG_BENCH_BYTES ?? 1024 ** 3);

// What a busy node's kern.log looks like: mostly other kernel chatter, some user space through
// the same file, a few conntrack lines and rate-limit summaries (about 1 line in 50 matches).
const ORDINARY = [
  (i) => `[${i}.123456] IPv6: ADDRCONF(NETDEV_CHANGE): veth${i % 97}a: link becomes ready`,
  (i) => `[${i}.234567] cni0: port ${i % 31}(veth${i % 97}a) entered forwarding state`,
  (i) => `[${i}.345678] audit: type=1400 audit(1683808708.${i % 1000}:${i}): apparmor="DENIED" operation="open" profile="cri-containerd.apparmor.d" name="/proc/${i}/mounts" pid=${i} comm="node"`,
  (i) => `[${i}.456789] EXT4-fs (vda1): re-mounted. Opts: errors=remount-ro`,
  (i) => `[${i}.567890] eth0: renamed from tmp${i % 1000}`,
  (i) => `[${i}.678901] oom_kill_process: 1 callbacks suppressed`,
  (i) => `[${i}.789012] IPVS: rr: TCP 10.96.0.${i % 250}:443 - no destination available`,
  (i) => `[${i}.890123] nf_conntrack: default automatic helper assignment has been turned off for security reasons and CT-based  firewall rule not found. Use the iptables CT target to attach helpers instead.`,
];
const MATCHING = [
  (i) => `[${i}.901234] nf_conntrack: nf_conntrack: table full, dropping packet`,
  (i) => `[${i}.012345] nf_conntrack: nf_conntrack: table full in netns 40265${32000 + (i % 500)}, dropping packet`,
  (i) => `[${i}.112233] net_ratelimit: ${i % 5000} callbacks suppressed`,
];
const USERSPACE = (i) => `sshd[${i}]: error: connect_to 10.0.0.${i % 250} port 22: failed.`;

function kernLine(i) {
  const stamp = `May 22 06:38:${String(i % 60).padStart(2, '0')} web1 `;
  if (i % 50 === 0) return stamp + 'kernel: ' + MATCHING[i % MATCHING.length](i);
  if (i % 17 === 0) return stamp + USERSPACE(i);
  return stamp + 'kernel: ' + ORDINARY[i % ORDINARY.length](i);
}
// The other text sinks (busybox syslogd, ISO-like dates, RFC 5424, journalctl -o short-iso), in turn.
function otherSinkLine(i) {
  const l = kernLine(i);
  const body = l.slice(l.indexOf(' web1 ') + 6);
  const kernel = body.startsWith('kernel: ');
  const text = kernel ? body.slice(8) : body;
  switch (i % 4) {
    case 0:
      return kernel ? `May 22 06:38:04 web1 kern.warn kernel: ${text}` : `May 22 06:38:04 web1 auth.info ${body}`;
    case 1:
      return `2023-05-22 06:38:04 web1 ${body}`;
    case 2:
      return kernel ? `<4>1 2023-05-22T06:38:04.123+00:00 web1 kernel - - - ${text}` : `<38>1 2023-05-22T06:38:04.123+00:00 web1 sshd ${i} - - ${text}`;
    default:
      return `2023-05-22T06:38:04+0000 web1 ${body}`;
  }
}
function kmsgRecord(i) {
  const text = (i % 50 === 0 ? MATCHING[i % MATCHING.length](i) : ORDINARY[i % ORDINARY.length](i)).replace(/^\[[^\]]*\] /, '');
  return `4,${i},${i * 1000},-;${text}\n`;
}

function throughput(name, lines, classify) {
  let matches = 0;
  for (const l of lines) if (classify(l)) matches++; // warm-up
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < 2000) {
    for (const l of lines) if (classify(l)) matches++;
    n += lines.length;
  }
  const perSec = n / ((performance.now() - start) / 1000);
  console.log(
    `${name}: ${Math.round(perSec).toLocaleString('en')} lines/s classified (${(perSec / CLASSIFY_TARGET).toFixed(2)}× the 1,000,000/s target; ${((matches / (n + lines.length)) * 100).toFixed(1)}% matched)`,
  );
  return perSec;
}

if (process.argv[2] === 'backlog') {
  // In its own process, so that RSS is the follower's alone.
  process.exit((await followBacklog()) ? 0 : 1);
}

const N = 100_000;
const kern = Array.from({ length: N }, (_, i) => Buffer.from(kernLine(i)).toString('latin1'));
const kmsg = Array.from({ length: N }, (_, i) => kmsgRecord(i));
const a = throughput('kern.log lines (classifyLogLine)', kern, classifyLogLine);
const b = throughput('kmsg records (classifyKmsgRecord)', kmsg, classifyKmsgRecord);
const other = Array.from({ length: N }, (_, i) => Buffer.from(otherSinkLine(i)).toString('latin1'));
const c = throughput('busybox / ISO / RFC 5424 / short-iso lines (classifyLogLine)', other, classifyLogLine);
const backlog = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), 'backlog'], { stdio: 'inherit' });
const ok = a >= CLASSIFY_TARGET && b >= CLASSIFY_TARGET && c >= CLASSIFY_TARGET && backlog.status === 0;
if (!ok) console.log('kernel-log: BELOW TARGET');
process.exit(ok ? 0 : 1);

/** Follows a generated 1 GB file from its start; prints time and peak RSS; false if over target or lines were missed. */
async function followBacklog() {
  const dir = mkdtempSync(join(tmpdir(), 'kernel-log-bench-'));
  const path = join(dir, 'kern.log');
  let peakMb = 0;
  let ok = true;
  try {
    const block = Buffer.from(Array.from({ length: 20_000 }, (_, i) => kernLine(i) + '\n').join(''), 'latin1');
    const linesPerBlock = 20_000;
    const fd = openSync(path, 'w');
    let bytes = 0;
    let lines = 0;
    while (bytes < BACKLOG_BYTES) {
      writeSync(fd, block);
      bytes += block.length;
      lines += linesPerBlock;
    }
    closeSync(fd);
    globalThis.gc?.();
    const baseMb = process.memoryUsage().rss / 1024 ** 2;
    let counted = 0;
    let events = 0;
    const sink = {
      line(m) {
        counted++;
        if (m) events++;
      },
      lost() {},
    };
    const source = new FileSource({ path, fromStart: true, pollMs: 1000 });
    const sampler = setInterval(() => {
      peakMb = Math.max(peakMb, process.memoryUsage().rss / 1024 ** 2);
    }, 50);
    const start = performance.now();
    await source.start(sink);
    // start() began reading the backlog; idle() resolves once everything written so far is read.
    await source.idle();
    const secs = (performance.now() - start) / 1000;
    clearInterval(sampler);
    peakMb = Math.max(peakMb, process.memoryUsage().rss / 1024 ** 2);
    await source.stop();
    console.log(
      `1 GB backlog with from-start: ${(bytes / 1024 ** 3).toFixed(2)} GiB, ${lines.toLocaleString('en')} lines (${events.toLocaleString('en')} matched) in ${secs.toFixed(1)} s = ${Math.round(lines / secs).toLocaleString('en')} lines/s, ${(bytes / 1024 ** 2 / secs).toFixed(0)} MiB/s`,
    );
    console.log(
      `peak RSS while following: ${peakMb.toFixed(0)} MB (baseline ${baseMb.toFixed(0)} MB; ${(peakMb / RSS_TARGET_MB).toFixed(2)}× the ${RSS_TARGET_MB} MB ceiling)`,
    );
    if (counted !== lines) {
      console.log(`MISMATCH: counted ${counted} of ${lines} lines`);
      ok = false;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return ok && peakMb <= RSS_TARGET_MB;
}
