/**
 * A recording TCP proxy for the encryption tests: listens on loopback, forwards every connection
 * to `target`, and keeps every byte that passed in either direction, so a test can check what an
 * observer on the network would have seen.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface Wiretap {
  /** `host:port` to dial instead of the target. */
  readonly port: number;
  /** Everything seen so far, both directions concatenated. */
  seen(): Buffer;
  close(): Promise<void>;
}

export async function startWiretap(target: { host: string; port: number }): Promise<Wiretap> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = createConnection(target);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.on('data', (chunk: Buffer) => {
      chunks.push(Buffer.from(chunk));
      outbound.write(chunk);
    });
    outbound.on('data', (chunk: Buffer) => {
      chunks.push(Buffer.from(chunk));
      inbound.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    seen: () => Buffer.concat(chunks),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
