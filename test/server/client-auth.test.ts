/**
 * The client protocol secured: TLS on the client endpoint and client authentication.
 * - The endpoint alone (startClientServer with a counting session), spoken to with raw frames:
 *   a request before AUTH, an AUTH without or with a wrong token, and a client certificate from
 *   another CA are each answered UNAUTHENTICATED and the connection closed, with no request run;
 *   under TLS nothing of a key or value crosses the wire in clear text (a recording proxy checks,
 *   and sees it in clear without TLS).
 * - A real node process on a real etcd with --tls-* and --client-token-file, reached by TalosClient:
 *   a token or a client certificate from the CA gets in; no token, a wrong token, a client that does
 *   not trust the node's CA, an expired client certificate and a plain-TCP client get
 *   UnauthenticatedError (or, for plain TCP, a timeout) and write nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { type LocalEtcd, startLocalEtcd } from '../../coordination/etcd-server.js';
import { TalosClient } from '../../src/client/talos-client.js';
import type { RegionSession } from '../../src/cluster/client.js';
import { OperationTimeoutError, UnauthenticatedError } from '../../src/errors.js';
import { TokenSet } from '../../src/fabric/tls.js';
import {
  type ClientRequest,
  decodeFrame,
  encodeAuth,
  encodeFrame,
  FrameSplitter,
} from '../../src/server/client-protocol.js';
import { startClientServer } from '../../src/server/client-server.js';
import { type RunningNode, startNodeProcess } from '../../src/server/node-process.js';
import { createTestPki } from '../support/certs.js';
import { startWiretap } from '../support/wiretap.js';

jest.setTimeout(90_000);

const pki = createTestPki();
const caA = pki.ca('ca-a');
const caB = pki.ca('ca-b');
const nodeCert = caA.issue('node');
afterAll(() => pki.remove());

/** A session that counts the requests it ran (the gate must stop them before it). */
function countingSession(): { session: RegionSession; calls: () => number } {
  let calls = 0;
  const store = new Map<string, Buffer>();
  const hex = (key: string | Uint8Array): string => Buffer.from(key).toString('hex');
  return {
    calls: () => calls,
    session: {
      isServing: true,
      put: async (key, value) => {
        calls++;
        store.set(hex(key), Buffer.from(value));
      },
      delete: async (key) => {
        calls++;
        store.delete(hex(key));
      },
      get: async (key) => {
        calls++;
        return store.get(hex(key));
      },
      scan: async () => {
        calls++;
        return [];
      },
    },
  };
}

type Reply = { op: string; code?: string };

/** A raw connection speaking frames: send, and the replies and whether the node closed it. */
async function rawClient(
  port: number,
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer },
): Promise<{
  send(frame: Buffer): void;
  reply(): Promise<Reply>;
  closed: Promise<void>;
  socket: Socket;
}> {
  const socket =
    tls === undefined
      ? netConnect({ host: '127.0.0.1', port })
      : tlsConnect({ host: '127.0.0.1', port, ca: tls.ca, cert: tls.cert, key: tls.key });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once(tls === undefined ? 'connect' : 'secureConnect', () => resolve());
    socket.once('error', reject);
  });
  const replies: Reply[] = [];
  const waiters: ((r: Reply) => void)[] = [];
  const splitter = new FrameSplitter();
  socket.on('data', (chunk: Buffer) =>
    splitter.push(chunk, (body) => {
      const frame = decodeFrame(body);
      if (frame.kind !== 'replies') throw new Error(`a ${frame.kind} frame from the node`);
      // A batched frame holds many replies: each is one reply here, in order.
      for (const { reply: r } of frame.items) {
        const reply: Reply = r.kind === 'error' ? { op: 'error', code: r.code } : { op: r.kind };
        const waiter = waiters.shift();
        if (waiter !== undefined) waiter(reply);
        else replies.push(reply);
      }
    }),
  );
  return {
    socket,
    send: (frame) => socket.write(frame),
    reply: () => {
      const ready = replies.shift();
      return ready !== undefined ? Promise.resolve(ready) : new Promise((resolve) => waiters.push(resolve));
    },
    closed: new Promise((resolve) => socket.once('close', () => resolve())),
  };
}

const request = (id: number, r: ClientRequest): Buffer =>
  encodeFrame({ kind: 'requests', items: [{ id, request: r }] });
const put = (id: number, key: string, value: string): Buffer =>
  request(id, { op: 'put', regionId: 'r0', key: Buffer.from(key), value: Buffer.from(value) });

describe('client endpoint: the authentication gate', () => {
  const tokens = new TokenSet(['token-one', 'token-two']);

  test('a request before AUTH, an AUTH without a token and a wrong token are refused; nothing runs', async () => {
    const { session, calls } = countingSession();
    const server = await startClientServer({
      address: 'tcp://127.0.0.1:0',
      nodeId: 'n1',
      session: () => session,
      authentication: { tokens, clientCertificates: false },
    });
    const port = Number(server.address.split(':').at(-1));
    try {
      for (const opening of [put(1, 'k', 'v'), encodeAuth(1, ''), encodeAuth(1, 'token-three')]) {
        const raw = await rawClient(port);
        raw.send(opening);
        raw.send(put(2, 'k', 'v')); // pipelined behind the refused frame: dropped
        expect(await raw.reply()).toEqual({ op: 'error', code: 'UNAUTHENTICATED' });
        await raw.closed;
      }
      expect(calls()).toBe(0);
      // The second token of the file works as well as the first.
      const raw = await rawClient(port);
      raw.send(encodeAuth(1, 'token-two'));
      raw.send(put(2, 'k', 'v'));
      expect(await raw.reply()).toEqual({ op: 'done' });
      expect(await raw.reply()).toEqual({ op: 'done' });
      expect(calls()).toBe(1);
      raw.socket.destroy();
    } finally {
      await server.close();
    }
  });

  test('under TLS: a client certificate from the CA authenticates; one from another CA, or expired, is refused', async () => {
    const { session, calls } = countingSession();
    const server = await startClientServer({
      address: 'tcp://127.0.0.1:0',
      nodeId: 'n1',
      session: () => session,
      tls: { ca: caA.cert, cert: nodeCert.cert, key: nodeCert.key },
      authentication: { tokens, clientCertificates: true },
    });
    const port = Number(server.address.split(':').at(-1));
    try {
      const good = caA.issue('app');
      const ok = await rawClient(port, { ca: caA.cert, cert: good.cert, key: good.key });
      ok.send(encodeAuth(1, ''));
      ok.send(put(2, 'k', 'v'));
      expect(await ok.reply()).toEqual({ op: 'done' });
      expect(await ok.reply()).toEqual({ op: 'done' });
      expect(calls()).toBe(1);
      ok.socket.destroy();
      const foreign = caB.issue('app');
      const expired = caA.issue('old-app', { expired: true });
      for (const leaf of [foreign, expired]) {
        const raw = await rawClient(port, { ca: caA.cert, cert: leaf.cert, key: leaf.key });
        raw.send(encodeAuth(1, 'token-one')); // even with a good token: the certificate is bad
        raw.send(put(2, 'k', 'v'));
        expect(await raw.reply()).toEqual({ op: 'error', code: 'UNAUTHENTICATED' });
        await raw.closed;
      }
      expect(calls()).toBe(1);
    } finally {
      await server.close();
    }
  });

  test('under TLS no token, key or value crosses the wire in clear text (the tap sees them without TLS)', async () => {
    const token = 'token-one';
    const key = 'user:secret-key-4711';
    const value = 'a-value-nobody-may-read-0815';
    const observe = async (tls: boolean): Promise<string> => {
      const { session } = countingSession();
      const server = await startClientServer({
        address: 'tcp://127.0.0.1:0',
        nodeId: 'n1',
        session: () => session,
        ...(tls ? { tls: { ca: caA.cert, cert: nodeCert.cert, key: nodeCert.key } } : {}),
        authentication: { tokens, clientCertificates: false },
      });
      const tap = await startWiretap({ host: '127.0.0.1', port: Number(server.address.split(':').at(-1)) });
      try {
        const raw = await rawClient(tap.port, tls ? { ca: caA.cert } : undefined);
        raw.send(encodeAuth(1, token));
        raw.send(put(2, key, value));
        raw.send(request(3, { op: 'get', regionId: 'r0', key: Buffer.from(key) }));
        // AUTH and the put are done; the get finds the value just put.
        for (const op of ['done', 'done', 'value']) expect((await raw.reply()).op).toBe(op);
        raw.socket.destroy();
        return tap.seen().toString('latin1');
      } finally {
        await tap.close();
        await server.close();
      }
    };
    const plain = await observe(false);
    for (const secret of [token, key, value]) expect(plain).toContain(secret);
    const encrypted = await observe(true);
    expect(encrypted.length).toBeGreaterThan(500);
    for (const secret of [token, key, value]) expect(encrypted).not.toContain(secret);
  });
});

describe('a secured node process and TalosClient', () => {
  let etcd: LocalEtcd;
  let dir: string;
  let node: RunningNode;
  const cluster = `auth-${process.pid}`;
  const TOKEN = 'app-token-0123456789abcdef';

  beforeAll(async () => {
    etcd = await startLocalEtcd();
    dir = mkdtempSync(join(tmpdir(), 'talos-auth-'));
    writeFileSync(join(dir, 'tokens'), `# clients\n${TOKEN}\nother-token\n`);
    node = await startNodeProcess({
      nodeId: 'n1',
      listen: 'tcp://127.0.0.1:0',
      clientListen: 'tcp://127.0.0.1:0',
      etcd: etcd.endpoints,
      cluster,
      dataDir: join(dir, 'n1'),
      regions: 1,
      replicas: 1,
      expectedNodes: 1,
      leaseTtlMs: 2000,
      secret: 'auth-test',
      tls: { caFile: caA.certFile, certFile: nodeCert.certFile, keyFile: nodeCert.keyFile },
      clientTokenFile: join(dir, 'tokens'),
      logger: pino({ level: 'silent' }),
      metricsPort: 0,
    });
  }, 60_000);
  afterAll(async () => {
    await node?.stop();
    await etcd?.stop({ removeData: true });
    rmSync(dir, { recursive: true, force: true });
  });

  const connect = (options: Partial<Parameters<typeof TalosClient.connect>[0]>) =>
    TalosClient.connect({ etcd: etcd.endpoints, cluster, operationTimeoutMs: 20_000, ...options });

  test('a token over TLS, or a client certificate from the CA, gets in', async () => {
    const withToken = await connect({ tls: { ca: caA.cert }, token: TOKEN });
    try {
      await withToken.put('k1', 'v1');
      expect((await withToken.get('k1'))?.toString()).toBe('v1');
    } finally {
      await withToken.close();
    }
    const app = caA.issue('app');
    const withCert = await connect({ tls: { ca: caA.cert, cert: app.cert, key: app.key } });
    try {
      expect((await withCert.get('k1'))?.toString()).toBe('v1');
      await withCert.put('k2', 'v2');
      expect((await withCert.scan()).map((r) => r.key.toString())).toEqual(['k1', 'k2']);
    } finally {
      await withCert.close();
    }
  });

  test('no token, a wrong token, an untrusted node certificate, an expired client certificate: UnauthenticatedError, nothing written', async () => {
    const expired = caA.issue('old-app', { expired: true });
    const foreign = caB.issue('app');
    const cases: [string, Partial<Parameters<typeof TalosClient.connect>[0]>, RegExp][] = [
      ['no token', { tls: { ca: caA.cert } }, /requires credentials/],
      ['a wrong token', { tls: { ca: caA.cert }, token: 'guess' }, /does not accept this token/],
      [
        'trusts another CA',
        { tls: { ca: caB.cert, cert: foreign.cert, key: foreign.key }, token: TOKEN },
        /TLS/,
      ],
      [
        'an expired client certificate',
        { tls: { ca: caA.cert, cert: expired.cert, key: expired.key } },
        /certificate refused.*expired/i,
      ],
    ];
    for (const [what, options, message] of cases) {
      const client = await connect(options);
      try {
        const started = Date.now();
        const err = await client.put(`bad-${what}`, 'x').then(
          () => undefined,
          (e: unknown) => e,
        );
        expect([what, err]).toEqual([what, expect.any(UnauthenticatedError)]);
        expect((err as UnauthenticatedError).code).toBe('UNAUTHENTICATED');
        expect((err as Error).message).toMatch(message);
        expect(Date.now() - started).toBeLessThan(5000); // refused at once, not retried to the budget
        await expect(client.get('k1')).rejects.toBeInstanceOf(UnauthenticatedError);
      } finally {
        await client.close();
      }
    }
    const plain = await connect({ token: TOKEN, operationTimeoutMs: 1500 });
    try {
      await expect(plain.put('bad-plain', 'x')).rejects.toBeInstanceOf(OperationTimeoutError);
    } finally {
      await plain.close();
    }
    const good = await connect({ tls: { ca: caA.cert }, token: TOKEN });
    try {
      const keys = (await good.scan()).map((r) => r.key.toString());
      expect(keys.filter((k) => k.startsWith('bad-'))).toEqual([]);
    } finally {
      await good.close();
    }
    const metrics = await fetch(node.metricsAddress!).then((r) => r.text());
    for (const reason of ['missing', 'token', 'certificate'])
      expect(metrics).toMatch(
        new RegExp(`talos_client_auth_failures_total\\{[^}]*reason="${reason}"[^}]*\\} [1-9]`),
      );
  });
});
