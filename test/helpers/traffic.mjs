#!/usr/bin/env node
// Generates real flows on loopback, run inside a test network namespace.
//   traffic.mjs udp COUNT BASEPORT      one datagram each to 127.0.0.1:BASEPORT..BASEPORT+COUNT-1, then exit
//   traffic.mjs tcp-hold COUNT PORT     a server on 127.0.0.1:PORT and COUNT open client connections;
//                                       prints "ready" and holds them until killed
import { createSocket } from 'node:dgram';
import { createServer, connect } from 'node:net';

const [mode, countArg, portArg] = process.argv.slice(2);
const count = Number(countArg);
const port = Number(portArg);

if (mode === 'udp') {
  const socket = createSocket('udp4');
  socket.on('error', () => {}); // ICMP port unreachable comes back as an error on some kernels
  let sent = 0;
  const next = () => {
    if (sent === count) {
      socket.close();
      return;
    }
    socket.send('x', port + sent, '127.0.0.1', () => {
      sent++;
      setImmediate(next);
    });
  };
  next();
} else if (mode === 'tcp-hold') {
  const held = [];
  const server = createServer((s) => held.push(s));
  server.listen(port, '127.0.0.1', async () => {
    for (let i = 0; i < count; i++) {
      await new Promise((resolve, reject) => {
        const c = connect(port, '127.0.0.1', () => resolve(undefined));
        c.on('error', reject);
        held.push(c);
      });
    }
    process.stdout.write('ready\n');
  });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
