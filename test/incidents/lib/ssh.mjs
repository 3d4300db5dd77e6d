#!/usr/bin/env node
// Seed 000's traffic: ssh-like TCP sessions to :22 on many addresses.
//   ssh.mjs server PORT
//       listens on 0.0.0.0:PORT, greets every connection with an SSH banner and
//       echoes what it receives (a healthy sshd on every node); prints "ready"
//   ssh.mjs client FIRST COUNT PER_SECOND TIMEOUT_MS
//       opens COUNT sessions to :22 on addresses FIRST..FIRST+COUNT-1 (address i is
//       10.22.<1 + i/250>.<1 + i%250>), PER_SECOND new connects a second, each
//       waiting up to TIMEOUT_MS for the banner (ssh's ConnectTimeout), and holds
//       the sessions that came up. Prints {"ok","timedOut","failed","pending"}
//       every second and once done; SIGUSR1 sends a line on the oldest
//       session and prints {"pong": ms} when it is echoed (a session that stays
//       healthy while new connects fail).
import { createServer, connect } from 'node:net';

const [mode, ...args] = process.argv.slice(2);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
export const address = (i) => `10.22.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

if (mode === 'server') {
  const server = createServer((s) => {
    s.on('error', () => {});
    s.write('SSH-2.0-OpenSSH_9.2p1 lab\r\n');
    s.pipe(s);
  });
  server.listen(Number(args[0]), '0.0.0.0', () => process.stdout.write('ready\n'));
} else if (mode === 'client') {
  const [first, count, perSecond, timeoutMs] = args.map(Number);
  const held = [];
  const stats = { ok: 0, timedOut: 0, failed: 0, pending: 0 };
  let started = 0;
  const one = (i) => {
    stats.pending++;
    let settled = false;
    const settle = (key) => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      stats.pending--;
      stats[key]++;
      return true;
    };
    const s = connect(22, address(i));
    const timer = setTimeout(() => settle('timedOut') && s.destroy(), timeoutMs);
    s.once('data', () => settle('ok') && held.push(s));
    s.on('error', () => settle('failed'));
  };
  const tick = setInterval(() => {
    for (let k = 0; k < perSecond / 10 && started < count; k++) one(first + started++);
    if (started === count && stats.pending === 0) {
      clearInterval(tick);
      out({ done: true, ...stats });
    }
  }, 100);
  setInterval(() => out(stats), 1000);
  process.on('SIGUSR1', () => {
    if (!held.length) return out({ pong: null });
    const t0 = Date.now();
    held[0].once('data', () => out({ pong: Date.now() - t0 }));
    held[0].write('ping\n');
  });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
