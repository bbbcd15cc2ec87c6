/**
 * A node's client endpoint: the client protocol (client-protocol.ts) over TCP, or over TLS with
 * `tls`. Each request names its region; the node runs it on the session serving that region here,
 * or answers WRONG_PRIMARY. Typed errors travel as their code (WRONG_PRIMARY, OUTCOME_UNKNOWN,
 * KEY_TOO_LARGE, …) so the client can rebuild them. Requests on one connection run concurrently;
 * replies carry their id.
 *
 * Authentication (`authentication`): a connection is authenticated by a client certificate the
 * CA verified (under TLS, when `clientCertificates`), or by an AUTH frame carrying one of
 * `tokens` (constant-time comparison, tls.ts). Until then every frame but AUTH is answered
 * UNAUTHENTICATED and the connection is closed: no request runs, no key or value is read or sent.
 * A client that presents a certificate the CA does not verify (another CA, expired) is refused
 * even where no credentials are required. Without `authentication` every connection is served.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { RegionSession } from '../cluster/client.js';
import type { ScanOptions } from '../engine/store.js';
import { TalosError, UnauthenticatedError, WrongPrimaryError } from '../errors.js';
import { parseTcpAddress } from '../fabric/tcp.js';
import { type TlsCredentials, type TokenSet, tlsServerOptions } from '../fabric/tls.js';
import {
  type ClientRequest,
  decodeAuth,
  decodeRequest,
  encodeError,
  encodeOk,
  FrameSplitter,
  OP,
} from './client-protocol.js';

/** Why a connection was refused (the node counts them by this). */
export type AuthFailure = 'missing' | 'token' | 'certificate';

export interface ClientServerOptions {
  /** `tcp://host:port` (port 0: any free port; `address` reports the one chosen). */
  address: string;
  nodeId: string;
  session(regionId: string): RegionSession | undefined;
  /** Called once per request with its op, duration and outcome ('ok' or the error code). */
  observe?: (op: ClientRequest['op'], seconds: number, outcome: string) => void;
  /** Serve TLS: the node's certificate and key; `ca` verifies client certificates. */
  tls?: TlsCredentials;
  /** Require credentials: one of `tokens`, or (with `tls`) a client certificate from the CA. */
  authentication?: { tokens?: TokenSet; clientCertificates: boolean };
  /** Called once per refused connection. */
  onAuthFailure?: (reason: AuthFailure) => void;
}

export interface ClientServer {
  readonly address: string;
  close(): Promise<void>;
}

export async function startClientServer(options: ClientServerOptions): Promise<ClientServer> {
  const { host, port: requestedPort } = parseTcpAddress(options.address);
  const sockets = new Set<Socket>();
  const serve = (socket: Socket): void => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const gate = authGate(options, socket);
    const splitter = new FrameSplitter();
    socket.on('data', (chunk: Buffer) => {
      try {
        splitter.push(chunk, (op, requestId, body) => {
          if (!gate.admit(op, requestId, body)) return;
          let request: ClientRequest;
          try {
            request = decodeRequest(op, body);
          } catch (err) {
            socket.write(encodeError(requestId, err, ''));
            return;
          }
          const started = process.hrtime.bigint();
          const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
          void run(options, request).then(
            (reply) => {
              options.observe?.(request.op, seconds(), 'ok');
              if (!socket.destroyed) socket.write(encodeOk(requestId, reply));
            },
            (err: unknown) => {
              options.observe?.(request.op, seconds(), err instanceof TalosError ? err.code : 'INTERNAL');
              if (!socket.destroyed) socket.write(encodeError(requestId, err, request.regionId));
            },
          );
        });
      } catch {
        socket.destroy(); // a malformed stream: nothing more can be parsed from it
      }
    });
  };
  const server: Server =
    options.tls === undefined
      ? createServer(serve)
      : // Client certificates are optional in the handshake: authGate decides (a token may do).
        createTlsServer(tlsServerOptions(options.tls, false), serve).on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(requestedPort, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : requestedPort;
  return {
    address: `tcp://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A connection's authentication state. `admit` is called for every frame in order: it answers
 * AUTH itself, and lets a request through only once the connection is authenticated; otherwise it
 * answers UNAUTHENTICATED, closes the connection and drops every later frame.
 */
function authGate(
  options: ClientServerOptions,
  socket: Socket,
): { admit(op: number, requestId: number, body: Buffer): boolean } {
  const required = options.authentication;
  const tlsSocket = options.tls === undefined ? undefined : (socket as TLSSocket);
  // A certificate the client chose to present must verify, credentials required or not.
  const presented = tlsSocket !== undefined && Object.keys(tlsSocket.getPeerCertificate()).length > 0;
  const badCertificate =
    presented && !tlsSocket.authorized ? String(tlsSocket.authorizationError ?? 'not verified') : undefined;
  const certified = presented && tlsSocket.authorized && required?.clientCertificates === true;
  let authenticated = badCertificate === undefined && (required === undefined || certified);
  let refused = false;
  const refuse = (requestId: number, reason: AuthFailure, detail: string): false => {
    refused = true;
    options.onAuthFailure?.(reason);
    socket.end(encodeError(requestId, new UnauthenticatedError(detail), ''));
    return false;
  };
  return {
    admit(op, requestId, body) {
      if (refused) return false;
      if (badCertificate !== undefined) {
        return refuse(requestId, 'certificate', `client certificate refused (${badCertificate})`);
      }
      if (op === OP.AUTH) {
        let token = '';
        try {
          token = decodeAuth(body);
        } catch {}
        if (!authenticated) {
          if (token === '')
            return refuse(requestId, 'missing', `node ${options.nodeId} requires credentials`);
          if (required?.tokens?.accepts(token) !== true) {
            return refuse(requestId, 'token', `node ${options.nodeId} does not accept this token`);
          }
          authenticated = true;
        }
        socket.write(encodeOk(requestId));
        return false;
      }
      if (!authenticated) {
        return refuse(
          requestId,
          'missing',
          `node ${options.nodeId} requires credentials (a token or a client certificate)`,
        );
      }
      return true;
    },
  };
}

type Fill = (w: {
  u8(v: number): unknown;
  u32(v: number): unknown;
  bytes(v: Uint8Array): unknown;
  str(v: string): unknown;
}) => void;

async function run(options: ClientServerOptions, request: ClientRequest): Promise<Fill> {
  const session = options.session(request.regionId);
  if (session === undefined || !session.isServing) {
    throw new WrongPrimaryError(request.regionId, options.nodeId, undefined);
  }
  switch (request.op) {
    case 'put':
      await session.put(request.key, request.value);
      return () => {};
    case 'delete':
      await session.delete(request.key);
      return () => {};
    case 'get': {
      const value = await session.get(request.key);
      return (w) => {
        w.u8(value === undefined ? 0 : 1);
        if (value !== undefined) w.bytes(value);
      };
    }
    case 'scan': {
      const scan: ScanOptions = { gte: request.gte, limit: request.limit, reverse: request.reverse };
      if (request.lt !== undefined) scan.lt = request.lt;
      const rows = await session.scan(scan);
      return (w) => {
        w.u32(rows.length);
        for (const row of rows) {
          w.bytes(row.key);
          w.bytes(row.value);
        }
      };
    }
  }
}
