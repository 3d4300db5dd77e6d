#!/usr/bin/env node
// Seed 004's traffic: a DNS server answering many tiny UDP flows.
//   dns.mjs server ADDRESS PORT
//       answers every datagram on ADDRESS:PORT with a reply of the same id (the
//       PowerDNS server); prints "ready"
//   dns.mjs client ADDRESS PORT PER_SECOND
//       PER_SECOND queries a second, each from a new socket (a new source port,
//       so a new conntrack entry on the server), each retried after 1 s without
//       an answer, up to 3 tries (what resolvers do); prints
//       {"sent","answered","retries","failed"} every second.
import { createSocket } from 'node:dgram';

const [mode, address, portArg, rateArg] = process.argv.slice(2);
const port = Number(portArg);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (mode === 'server') {
  const s = createSocket('udp4');
  s.on('message', (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
  s.bind(port, address, () => process.stdout.write('ready\n'));
} else if (mode === 'client') {
  const perSecond = Number(rateArg);
  const stats = { sent: 0, answered: 0, retries: 0, failed: 0 };
  let id = 0;
  const query = () => {
    const s = createSocket('udp4');
    const q = Buffer.alloc(12);
    q.writeUInt16BE(id++ & 0xffff, 0);
    let tries = 0;
    let timer;
    const send = () => {
      tries++;
      if (tries > 1) stats.retries++;
      s.send(q, port, address, () => {});
      timer = setTimeout(() => (tries < 3 ? send() : (stats.failed++, s.close())), 1000);
    };
    s.on('error', () => {});
    s.on('message', () => {
      clearTimeout(timer);
      stats.answered++;
      s.close();
    });
    stats.sent++;
    send();
  };
  let credit = 0;
  setInterval(() => {
    for (credit += perSecond / 10; credit >= 1; credit--) query();
  }, 100);
  setInterval(() => out(stats), 1000);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
