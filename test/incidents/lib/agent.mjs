#!/usr/bin/env node
// The incident lab's agent inside the monitoring namespace (the test process
// itself stays in the host's namespace and cannot open sockets in another):
//   agent.mjs WEBHOOK_PORT
// - Alertmanager's webhook receiver on 127.0.0.1:WEBHOOK_PORT: every POST is
//   written to stdout as {"page": {"at": <ms since epoch>, "body": <JSON>}};
// - a fetch relay: each stdin line {"id", "url"} is answered on stdout with
//   {"id", "status", "body"} (Prometheus' and Alertmanager's HTTP APIs).
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

const port = Number(process.argv[2]);
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const server = createServer((req, res) => {
  let body = '';
  req.on('data', (b) => (body += b));
  req.on('end', () => {
    const at = Date.now();
    let parsed;
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = { unparsed: body };
    }
    out({ page: { at, path: req.url, body: parsed } });
    res.writeHead(200).end('ok');
  });
});
server.listen(port, '127.0.0.1', () => out({ ready: true }));

createInterface({ input: process.stdin }).on('line', async (line) => {
  const { id, url, method, body } = JSON.parse(line);
  try {
    const r = await fetch(url, { method: method ?? 'GET', body, headers: body ? { 'content-type': 'application/json' } : {}, signal: AbortSignal.timeout(20_000) });
    out({ id, status: r.status, body: await r.text() });
  } catch (err) {
    out({ id, status: 0, body: String(err) });
  }
});
process.stdin.on('end', () => process.exit(0));
