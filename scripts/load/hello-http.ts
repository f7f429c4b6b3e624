import { createServer } from 'node:http';

// Baseline: the ceiling of node:http on this machine, no framework at all.
createServer((_req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end('hello');
}).listen(Number(process.env.PORT), '127.0.0.1');
process.once('SIGTERM', () => process.exit(0));
