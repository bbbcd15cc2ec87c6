/**
 * A node's client endpoint: the client protocol (client-protocol.ts) over TCP, or over TLS with
 * `tls`. Each request names its region; the node runs it on the session serving that region here,
 * or answers WRONG_PRIMARY. Typed errors travel as their code (WRONG_PRIMARY, OUTCOME_UNKNOWN,
 * KEY_TOO_LARGE, …) so the client can rebuild them. Requests on one connection run concurrently:
 * the operations of a request frame start in frame order (so the store appends them in that
 * order), each reply joins the connection's reply batch when its operation completes, and a
 * tick's replies leave in one frame (FrameBatcher). A malformed frame, and closing the endpoint,
 * end a connection with GOAWAY (client-protocol.ts) naming the last request started: none of a
 * malformed frame's operations ran, and the client knows which of its requests never did.
 *
 * Authentication (`authentication`): a connection is authenticated by a client certificate the
 * CA verified (under TLS, when `clientCertificates`), or by an AUTH frame carrying one of
 * `tokens` (constant-time comparison, tls.ts). Until then every frame but AUTH is answered
 * UNAUTHENTICATED and the connection is closed: no request runs, no key or value is read or sent
 * (the gate looks at a frame's kind byte only; a refused frame is never decoded).
 * A client that presents a certificate the CA does not verify (another CA, expired) is refused
 * even where no credentials are required. Without `authentication` every connection is served.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { assert } from '../assert.js';
import type { RegionSession } from '../cluster/client.js';
import type { ScanOptions } from '../engine/store.js';
import { InvalidArgumentError, TalosError, UnauthenticatedError, WrongPrimaryError } from '../errors.js';
import { parseTcpAddress } from '../fabric/tcp.js';
import { type TlsCredentials, type TokenSet, tlsServerOptions } from '../fabric/tls.js';
import {
  type ClientReply,
  type ClientRequest,
  CONNECTION_ID,
  decodeFrame,
  encodeFrame,
  errorReply,
  FRAME_KIND,
  FrameBatcher,
  FrameSplitter,
  frameKind,
  ProtocolError,
} from './client-protocol.js';
import { ConnectionHandles } from './cursor-handles.js';

/** Why a connection was refused (the node counts them by this). */
export type AuthFailure = 'missing' | 'token' | 'certificate';

export interface ClientServerOptions {
  /** `tcp://host:port` (port 0: any free port; `address` reports the one chosen). */
  address: string;
  nodeId: string;
  session(regionId: string): RegionSession | undefined;
  /** Called once per request with its op, duration and outcome ('ok' or the error code). */
  observe?: (op: ClientRequest['op'], seconds: number, outcome: string) => void;
  /** Called once per frame: a request frame received or a reply frame sent, with its operation count. */
  observeFrame?: (direction: 'requests' | 'replies', operationCount: number) => void;
  /** Serve TLS: the node's certificate and key; `ca` verifies client certificates. */
  tls?: TlsCredentials;
  /** Require credentials: one of `tokens`, or (with `tls`) a client certificate from the CA. */
  authentication?: { tokens?: TokenSet; clientCertificates: boolean };
  /** Called once per refused connection. */
  onAuthFailure?: (reason: AuthFailure) => void;
  /** A server-side cursor or snapshot unused this long is closed (default 60 s; cursor-handles.ts). */
  handleLeaseMs?: number;
}

const DEFAULT_HANDLE_LEASE_MS = 60_000;

export interface ClientServer {
  readonly address: string;
  /** Server-side cursors and snapshots the connections hold now (cursor-handles.ts). */
  openHandles(): number;
  close(): Promise<void>;
}

export async function startClientServer(options: ClientServerOptions): Promise<ClientServer> {
  const { host, port: requestedPort } = parseTcpAddress(options.address);
  /** Open connections, each with how to say GOAWAY on it. */
  const sockets = new Map<Socket, (code: string, message: string) => void>();
  /** Server-side cursors and snapshots held by all connections. */
  let openHandles = 0;
  const serve = (socket: Socket): void => {
    let lastId = 0;
    socket.setNoDelay(true);
    const handles = new ConnectionHandles(options.handleLeaseMs ?? DEFAULT_HANDLE_LEASE_MS, (delta) => {
      openHandles += delta;
    });
    socket.on('close', () => {
      sockets.delete(socket);
      handles.closeAll();
    });
    socket.on('error', () => {});
    const replies = new FrameBatcher('replies', (frame, count) => {
      options.observeFrame?.('replies', count);
      if (!socket.destroyed && !socket.writableEnded) socket.write(frame);
    });
    const gate = authGate(options, socket, replies);
    const splitter = new FrameSplitter();
    let closing = false;
    /** GOAWAY with the last request started, after the replies batched so far; then the close. */
    const goAway = (code: string, message: string): void => {
      if (closing) return;
      closing = true;
      replies.flush();
      const last = encodeFrame({ kind: 'goaway', lastId, code, message: message.slice(0, 1024) });
      socket.end(last, () => socket.destroy());
      setTimeout(() => socket.destroy(), 1000).unref(); // a peer that does not read: closed anyway
    };
    sockets.set(socket, goAway);
    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
      try {
        splitter.push(chunk, (body) => {
          if (closing || !gate.admit(body)) return;
          const frame = decodeFrame(body);
          if (frame.kind !== 'requests') throw new ProtocolError(`a ${frame.kind} frame from a client`);
          options.observeFrame?.('requests', frame.items.length);
          for (const { id, request } of frame.items) {
            lastId = id;
            serveOne(options, replies, id, request, handles);
          }
        });
      } catch (err) {
        const reason = err instanceof ProtocolError ? err : new ProtocolError(String(err));
        goAway(reason.code, reason.message); // none of the malformed frame's operations ran
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
    openHandles: () => openHandles,
    close: () =>
      new Promise<void>((resolve) => {
        for (const goAway of sockets.values()) goAway('GOING_AWAY', `node ${options.nodeId} is closing`);
        server.close(() => resolve());
      }),
  };
}

/** One reply frame holding `reply` under `id`, for the last words before a close. */
function encodeReplyNow(id: number, reply: ClientReply): Buffer {
  let frame: Buffer | undefined;
  const batcher = new FrameBatcher('replies', (f) => {
    frame = f;
  });
  batcher.add({ id, reply });
  batcher.flush();
  assert(frame !== undefined, 'a flushed batch with one reply is a frame');
  return frame;
}

/**
 * Runs one operation of a request frame; its reply (or its error, typed by code) joins the
 * connection's reply batch. `observe` sees its duration and outcome.
 */
function serveOne(
  options: ClientServerOptions,
  replies: FrameBatcher<'replies'>,
  id: number,
  request: ClientRequest,
  handles: ConnectionHandles,
): void {
  const started = options.observe === undefined ? 0n : process.hrtime.bigint();
  const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
  run(options, request, handles).then(
    (reply) => {
      options.observe?.(request.op, seconds(), 'ok');
      addReply(replies, id, reply, request.regionId);
    },
    (err: unknown) => {
      options.observe?.(request.op, seconds(), err instanceof TalosError ? err.code : 'INTERNAL');
      addReply(replies, id, errorReply(err, request.regionId), request.regionId);
    },
  );
}

/** Adds a reply; one no frame can hold (a scan too large) is answered INVALID_ARGUMENT instead. */
function addReply(replies: FrameBatcher<'replies'>, id: number, reply: ClientReply, regionId: string): void {
  try {
    replies.add({ id, reply });
  } catch (err) {
    replies.add({ id, reply: errorReply(err, regionId) });
  }
}

/**
 * A connection's authentication state. `admit` is called for every frame in order, with the
 * frame's body undecoded: it answers AUTH itself, and lets a request frame through only once the
 * connection is authenticated; otherwise it answers UNAUTHENTICATED (under id 0 for a request
 * frame, whose ids it does not read), closes the connection and drops every later frame.
 */
function authGate(
  options: ClientServerOptions,
  socket: Socket,
  replies: FrameBatcher<'replies'>,
): { admit(body: Buffer): boolean } {
  const required = options.authentication;
  const tlsSocket = options.tls === undefined ? undefined : (socket as TLSSocket);
  // A certificate the client chose to present must verify, credentials required or not.
  const presented = tlsSocket !== undefined && Object.keys(tlsSocket.getPeerCertificate()).length > 0;
  const badCertificate =
    presented && !tlsSocket.authorized ? String(tlsSocket.authorizationError ?? 'not verified') : undefined;
  const certified = presented && tlsSocket.authorized && required?.clientCertificates === true;
  let authenticated = badCertificate === undefined && (required === undefined || certified);
  let refused = false;
  const refuse = (id: number, reason: AuthFailure, detail: string): false => {
    refused = true;
    options.onAuthFailure?.(reason);
    replies.flush();
    socket.end(encodeReplyNow(id, errorReply(new UnauthenticatedError(detail), '')));
    return false;
  };
  return {
    admit(body) {
      if (refused) return false;
      const isAuth = frameKind(body) === FRAME_KIND.auth;
      let id = CONNECTION_ID;
      let token = '';
      if (isAuth) {
        try {
          const frame = decodeFrame(body);
          if (frame.kind === 'auth') ({ id, token } = frame);
        } catch {}
      }
      if (badCertificate !== undefined) {
        return refuse(id, 'certificate', `client certificate refused (${badCertificate})`);
      }
      if (isAuth) {
        if (!authenticated) {
          if (token === '') return refuse(id, 'missing', `node ${options.nodeId} requires credentials`);
          if (required?.tokens?.accepts(token) !== true) {
            return refuse(id, 'token', `node ${options.nodeId} does not accept this token`);
          }
          authenticated = true;
        }
        replies.add({ id, reply: { kind: 'done' } });
        return false;
      }
      if (!authenticated) {
        return refuse(
          id,
          'missing',
          `node ${options.nodeId} requires credentials (a token or a client certificate)`,
        );
      }
      return true;
    },
  };
}

async function run(
  options: ClientServerOptions,
  request: ClientRequest,
  handles: ConnectionHandles,
): Promise<ClientReply> {
  // A handle's requests need no serving session: the handle holds what they read (and a release
  // must work whatever the region does meanwhile).
  if (request.op === 'next') {
    return {
      kind: 'page',
      ...(await handles.page(request.handle, request.count, request.rewind, request.seek)),
    };
  }
  if (request.op === 'release') {
    handles.release(request.handle);
    return DONE;
  }
  const session = options.session(request.regionId);
  if (session === undefined || !session.isServing) {
    throw new WrongPrimaryError(request.regionId, options.nodeId, undefined);
  }
  switch (request.op) {
    case 'put':
      await session.put(request.key, request.value);
      return DONE;
    case 'delete':
      await session.delete(request.key);
      return DONE;
    case 'get': {
      const value = await session.get(request.key);
      return value === undefined ? MISSING : { kind: 'value', value };
    }
    case 'scan': {
      const scan: ScanOptions = { gte: request.gte, limit: request.limit, reverse: request.reverse };
      if (request.lt !== undefined) scan.lt = request.lt;
      return { kind: 'rows', rows: await session.scan(scan) };
    }
    case 'batch': {
      if (session.batch === undefined)
        throw new InvalidArgumentError('this session does not support batches');
      await session.batch(
        request.operations.map((op) =>
          op.del
            ? { type: 'del' as const, key: op.key }
            : { type: 'put' as const, key: op.key, value: op.value },
        ),
      );
      return DONE;
    }
    case 'snapshot':
      return { kind: 'handle', handle: handles.openSnapshot(request.regionId, session) };
    case 'cursor':
      return { kind: 'handle', handle: handles.openCursor(request.regionId, session, request) };
  }
}

const DONE: ClientReply = { kind: 'done' };
const MISSING: ClientReply = { kind: 'missing' };
