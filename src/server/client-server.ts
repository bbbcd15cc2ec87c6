/**
 * A node's client endpoint: the client protocol (client-protocol.ts) over TCP. Each request names
 * its region; the node runs it on the session serving that region here, or answers WRONG_PRIMARY.
 * Typed errors travel as their code (WRONG_PRIMARY, OUTCOME_UNKNOWN, KEY_TOO_LARGE, …) so the
 * client can rebuild them. Requests on one connection run concurrently; replies carry their id.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { RegionSession } from '../cluster/client.js';
import type { ScanOptions } from '../engine/store.js';
import { TalosError, WrongPrimaryError } from '../errors.js';
import { parseTcpAddress } from '../fabric/tcp.js';
import {
  type ClientRequest,
  decodeRequest,
  encodeError,
  encodeOk,
  FrameSplitter,
} from './client-protocol.js';

export interface ClientServerOptions {
  /** `tcp://host:port` (port 0: any free port; `address` reports the one chosen). */
  address: string;
  nodeId: string;
  session(regionId: string): RegionSession | undefined;
  /** Called once per request with its op, duration and outcome ('ok' or the error code). */
  observe?: (op: ClientRequest['op'], seconds: number, outcome: string) => void;
}

export interface ClientServer {
  readonly address: string;
  close(): Promise<void>;
}

export async function startClientServer(options: ClientServerOptions): Promise<ClientServer> {
  const { host, port: requestedPort } = parseTcpAddress(options.address);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const splitter = new FrameSplitter();
    socket.on('data', (chunk: Buffer) => {
      try {
        splitter.push(chunk, (op, requestId, body) => {
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
  });
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
