#!/usr/bin/env node
// Seed 001's traffic: workers calling a Redis-like server without a shared pool.
//   redis.mjs server ADDRESS PORT
//       answers every "PING" line with "+PONG"; never closes first; and answers DNS
//       queries on ADDRESS:53 (the name server); prints "ready"
//   redis.mjs client ADDRESS PORT PER_SECOND
//       PER_SECOND commands a second, each on a connection of its own (a DNS
//       lookup, connect, PING, +PONG, close: the client closes first, so every
//       command leaves a TIME_WAIT entry and a UDP entry behind). SIGUSR1: 4x the rate (the traffic spike).
//       SIGUSR2: switch to a pool of 8 persistent connections (the fix).
//       Prints {"mode","rate","ok","errors"} every second.
import { createSocket } from 'node:dgram';
import { createServer, connect } from 'node:net';

const [mode, address, portArg, rateArg] = process.argv.slice(2);
const port = Number(portArg);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (mode === 'server') {
  const server = createServer((s) => {
    s.on('error', () => {});
    let buf = '';
    s.on('data', (b) => {
      buf += b;
      for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) s.write('+PONG\r\n');
    });
  });
  const dns = createSocket('udp4');
  dns.on('message', (msg, rinfo) => dns.send(msg, rinfo.port, rinfo.address));
  dns.bind(53, address, () => server.listen(port, address, () => process.stdout.write('ready\n')));
} else if (mode === 'client') {
  const stats = { mode: 'no-pool', rate: Number(rateArg), ok: 0, errors: 0 };
  const pool = [];
  // Without a pool every command also resolves the server's name first (a DNS query on :53 of
  // the same address from a new socket: a UDP entry that is never assured).
  const lookup = () =>
    new Promise((resolve) => {
      const u = createSocket('udp4');
      const done = () => {
        clearTimeout(t);
        u.close();
        resolve();
      };
      const t = setTimeout(done, 1000);
      u.on('error', () => {});
      u.once('message', done);
      u.send(Buffer.alloc(12), 53, address);
    });
  const fresh = async () => {
    await lookup();
    const s = connect(port, address, () => s.write('PING\r\n'));
    const timer = setTimeout(() => (stats.errors++, s.destroy()), 3000);
    s.once('data', () => {
      clearTimeout(timer);
      stats.ok++;
      s.end();
    });
    s.on('error', () => {
      clearTimeout(timer);
      stats.errors++;
    });
  };
  let next = 0;
  const pooled = () => {
    const s = pool[next++ % pool.length];
    s.once('data', () => stats.ok++);
    s.write('PING\r\n');
  };
  let credit = 0;
  setInterval(() => {
    for (credit += stats.rate / 10; credit >= 1; credit--) {
      if (stats.mode === 'pool') pooled();
      else if (stats.mode === 'no-pool') fresh();
      // 'connecting': the deploy of the fix; commands wait for the pool.
    }
  }, 100);
  process.on('SIGUSR1', () => (stats.rate *= 4));
  const pooledConnection = () =>
    new Promise((resolve) => {
      const s = connect(port, address, () => resolve(s));
      s.on('error', () => {
        stats.errors++;
        setTimeout(() => pooledConnection().then(resolve), 1000);
      });
    });
  process.on('SIGUSR2', async () => {
    stats.mode = 'connecting';
    for (let i = 0; i < 8; i++) pool.push(await pooledConnection());
    stats.mode = 'pool';
  });
  setInterval(() => out(stats), 1000);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
