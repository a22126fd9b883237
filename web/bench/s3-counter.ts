/**
 * A counting pass-through in front of LocalStack for the part-duration benchmark (issue 7 item 3):
 * every S3 and SQS request of the runner and every presigned PUT of the browser goes through it,
 * classified the way AWS bills them. Nothing is changed: method, path, headers (Host included, so
 * signatures still verify) and bodies are forwarded as they are.
 *
 *   node --import tsx bench/s3-counter.ts LISTEN_HOST:PORT[,HOST:PORT…] UPSTREAM_URL
 *   GET /__counts        → {counts: {"s3.PUT": n, …}, since_ms}
 *   POST /__counts/reset → zeroes the counters
 */
import http from 'node:http';

const [listenArg, upstreamArg] = process.argv.slice(2);
if (!listenArg || !upstreamArg) {
  console.error('usage: s3-counter.ts HOST:PORT[,HOST:PORT…] UPSTREAM_URL');
  process.exit(2);
}
const upstream = new URL(upstreamArg);
let counts: Record<string, number> = {};
let since = Date.now();
const bump = (k: string): void => {
  counts[k] = (counts[k] ?? 0) + 1;
};

/** S3 request classes as priced: PUT/COPY/POST/LIST (tier 1), GET/HEAD (tier 2), DELETE (free). */
function s3Class(req: http.IncomingMessage, url: URL): string {
  const m = req.method ?? 'GET';
  const presigned = url.searchParams.has('X-Amz-Signature') ? '.presigned' : '';
  if (m === 'PUT') return req.headers['x-amz-copy-source'] ? 's3.COPY' : `s3.PUT${presigned}`;
  if (m === 'GET' && (url.searchParams.has('list-type') || url.searchParams.has('prefix') || url.searchParams.has('delimiter'))) return 's3.LIST';
  if (m === 'GET' || m === 'HEAD') return `s3.GET${presigned}`;
  if (m === 'POST') return url.searchParams.has('delete') ? 's3.POST.delete' : 's3.POST';
  if (m === 'DELETE') return 's3.DELETE';
  return `s3.${m}`;
}

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/__counts' || url.pathname === '/__counts/reset') {
    if (req.method === 'POST') {
      counts = {};
      since = Date.now();
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ counts, since_ms: Date.now() - since }));
    return;
  }
  const target = req.headers['x-amz-target'];
  const sqsAction = typeof target === 'string' && target.startsWith('AmazonSQS.') ? target.slice('AmazonSQS.'.length) : null;
  const isLocalstack = url.pathname.startsWith('/_localstack');
  if (!isLocalstack) {
    if (sqsAction && sqsAction !== 'ReceiveMessage') bump(`sqs.${sqsAction}`);
    else if (!sqsAction) bump(s3Class(req, url));
  }
  const up = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
    (ur) => {
      if (sqsAction === 'ReceiveMessage') {
        // an empty receive is the poller idling (a fixed cost per queue, not per video): count apart
        const chunks: Buffer[] = [];
        ur.on('data', (c: Buffer) => chunks.push(c));
        ur.on('end', () => {
          const body = Buffer.concat(chunks);
          const n = (body.toString('utf8').match(/"MessageId"/g) ?? []).length;
          bump(n > 0 ? 'sqs.ReceiveMessage' : 'sqs.ReceiveMessage.empty');
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          res.end(body);
        });
        return;
      }
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    },
  );
  up.on('error', (e) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`s3-counter: upstream error: ${e.message}`);
  });
  req.pipe(up);
}

for (const hp of listenArg.split(',')) {
  const i = hp.lastIndexOf(':');
  const server = http.createServer(handler);
  server.keepAliveTimeout = 60_000;
  server.listen(Number(hp.slice(i + 1)), hp.slice(0, i), () => console.error(`s3-counter: ${hp} → ${upstream.origin}`));
}
