// A fetch() that reaches https:// URLs through an explicit HTTP proxy with
// CONNECT, for the official SDKs' `fetch` client option.
//
// Owns: what undici's ProxyAgent would do, with Node built-ins only: Node
// 20's global fetch ignores HTTPS_PROXY and exposes no proxy dispatcher,
// and the SDKs document a custom `fetch` as the way to route their
// traffic. Each TLS connection is a CONNECT tunnel to the proxy (kept
// alive and reused like the SDK's own connections); certificates are
// verified as by any Node TLS client (NODE_EXTRA_CA_CERTS included).
// Must never: fall back to a direct connection, or decode a body it did
// not ask to be encoded (Accept-Encoding is not sent).
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { Readable } from 'node:stream';

class TunnelAgent extends https.Agent {
  constructor(proxyUrl) {
    super({ keepAlive: true });
    this.proxy = new URL(proxyUrl);
  }

  // Asynchronous form (callback), which http.Agent supports.
  createConnection(options, cb) {
    const authority = `${options.host}:${options.port}`;
    const req = http.request({ host: this.proxy.hostname, port: this.proxy.port || 80, method: 'CONNECT',
      path: authority, headers: { host: authority }, agent: false });
    req.once('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        cb(Object.assign(new Error(`proxy answered ${res.statusCode} to CONNECT ${authority}`),
          { code: 'EPROXY' }));
        return;
      }
      cb(null, tls.connect({ ...options, socket, servername: options.servername || options.host }));
    });
    req.once('error', cb);
    req.end();
  }
}

export function proxyFetch(proxyUrl) {
  const agent = new TunnelAgent(proxyUrl);
  return async (input, init = {}) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    if (url.protocol !== 'https:') throw new Error(`proxyFetch: only https URLs (${url.protocol})`);
    const headers = {};
    new Headers(init.headers ?? {}).forEach((v, k) => { if (k !== 'accept-encoding') headers[k] = v; });
    let body = init.body ?? null;
    if (body !== null && typeof body !== 'string' && !(body instanceof Uint8Array)) {
      body = Buffer.from(await new Response(body).arrayBuffer());
    }
    const method = init.method ?? 'GET';
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method, headers, agent, signal: init.signal ?? undefined }, (res) => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (Array.isArray(v)) v.forEach((x) => h.append(k, x));
          else if (v !== undefined) h.set(k, v);
        }
        const empty = method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
        resolve(new Response(empty ? null : Readable.toWeb(res),
          { status: res.statusCode, statusText: res.statusMessage, headers: h }));
      });
      req.once('error', reject);
      if (body !== null) req.write(body);
      req.end();
    });
  };
}
