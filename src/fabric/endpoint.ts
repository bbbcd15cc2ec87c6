/**
 * The bookkeeping every fabric's connection endpoint shares: registered regions (placement and
 * revocation), the message handler with its queue of messages that arrived before one was set,
 * close handlers that run once (or at once, for a handler registered after the close), and the
 * byte/operation counters. Each fabric adds only how bytes travel.
 */
import { assert } from '../assert.js';
import { ConnectionClosedError, FabricError, RegionRevokedError, WriteOutOfBoundsError } from '../errors.js';
import type { ConnectionStats, LocalRegion, RegionHandle, RemoteRegion } from './types.js';

let stashedResolve: () => void = () => {};
let stashedReject: (err: Error) => void = () => {};
function stash(resolve: () => void, reject: (err: Error) => void): void {
  stashedResolve = resolve;
  stashedReject = reject;
}

/**
 * A promise with its resolve and reject, made through one shared executor: no closure per
 * promise (the fabrics make one per write or per group of writes).
 */
export function completion(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  const promise = new Promise<void>(stash);
  return { promise, resolve: stashedResolve, reject: stashedReject };
}

export class FabricRegion implements LocalRegion {
  revoked = false;
  readonly bytes: Uint8Array;
  /** `bytes`: the region's memory when the fabric allocates it itself (rdma: a registered MR). */
  constructor(
    readonly handle: RegionHandle,
    bytes?: Uint8Array,
  ) {
    this.bytes = bytes ?? new Uint8Array(handle.bytes);
  }
}

export abstract class EndpointBase {
  closed = false;
  protected readonly regions = new Map<number, FabricRegion>();
  private messageHandler: ((message: Uint8Array) => void) | undefined;
  private readonly earlyMessages: Uint8Array[] = [];
  private closeHandlers: ((reason: Error) => void)[] = [];
  protected closeReason: Error | undefined;
  protected readonly counters: ConnectionStats = {
    bytesWritten: 0,
    writeCount: 0,
    bytesSent: 0,
    messagesSent: 0,
    bytesReceived: 0,
    messagesReceived: 0,
  };

  constructor(
    readonly localNodeId: string,
    readonly peerNodeId: string,
  ) {}

  /** The key of the next region this endpoint registers (fabric-wide or per connection). */
  protected abstract nextRegionKey(): number;

  registerRegion(bytes: number): LocalRegion {
    if (!Number.isInteger(bytes) || bytes <= 0)
      throw new FabricError('INVALID_REGION', `region size must be a positive integer, got ${bytes}`);
    this.ensureOpen();
    const region = new FabricRegion({ regionKey: this.nextRegionKey(), bytes });
    this.regions.set(region.handle.regionKey, region);
    return region;
  }

  remoteRegion(handle: RegionHandle): RemoteRegion {
    return { handle: { regionKey: handle.regionKey, bytes: handle.bytes } };
  }

  onMessage(handler: (message: Uint8Array) => void): void {
    this.messageHandler = handler;
    while (this.earlyMessages.length > 0 && this.messageHandler === handler && !this.closed) {
      handler(this.earlyMessages.shift()!);
    }
  }

  onClose(handler: (reason: Error) => void): void {
    if (this.closeReason !== undefined) {
      const reason = this.closeReason;
      queueMicrotask(() => handler(reason));
      return;
    }
    this.closeHandlers.push(handler);
  }

  revoke(region: LocalRegion): void {
    const own = this.regions.get(region.handle.regionKey);
    assert(own === region, `revoke: region ${region.handle.regionKey} was not registered on this connection`);
    own.revoked = true;
  }

  stats(): ConnectionStats {
    return { ...this.counters };
  }

  /** Checks a write before it is issued: open, and inside the remote region. */
  protected checkWrite(remote: RemoteRegion, offset: number, bytes: Uint8Array): Error | undefined {
    if (this.closed) return new ConnectionClosedError(this.closedDetail());
    if (!Number.isInteger(offset) || offset < 0 || offset + bytes.length > remote.handle.bytes) {
      return new WriteOutOfBoundsError(offset, bytes.length, remote.handle.bytes);
    }
    this.counters.bytesWritten += bytes.length;
    this.counters.writeCount += 1;
    return undefined;
  }

  /** Counts an outgoing message (after checking the endpoint is open). */
  protected countSend(message: Uint8Array): void {
    this.ensureOpen();
    this.counters.bytesSent += message.length;
    this.counters.messagesSent += 1;
  }

  /** Places an incoming write; returns the error to report to the writer, if any. */
  protected place(regionKey: number, offset: number, bytes: Uint8Array): Error | undefined {
    const region = this.regions.get(regionKey);
    if (region === undefined || region.revoked) return new RegionRevokedError(regionKey);
    if (offset + bytes.length > region.bytes.length) {
      return new WriteOutOfBoundsError(offset, bytes.length, region.bytes.length);
    }
    region.bytes.set(bytes, offset);
    return undefined;
  }

  /** Hands an incoming message to the handler, or queues it until one is set. */
  protected deliverMessage(message: Uint8Array): void {
    this.counters.bytesReceived += message.length;
    this.counters.messagesReceived += 1;
    if (this.messageHandler === undefined) this.earlyMessages.push(message);
    else this.messageHandler(message);
  }

  /**
   * Marks the endpoint closed with `reason` (once): its regions die with it (RDMA: the MRs are
   * deregistered with the connection) and the close handlers run. Returns false if already closed.
   */
  protected markClosed(reason: Error): boolean {
    if (this.closed) return false;
    this.closed = true;
    this.closeReason = reason;
    for (const region of this.regions.values()) region.revoked = true;
    const handlers = this.closeHandlers;
    this.closeHandlers = [];
    for (const handler of handlers) queueMicrotask(() => handler(reason));
    return true;
  }

  protected ensureOpen(): void {
    if (this.closed) throw new ConnectionClosedError(this.closedDetail());
  }

  protected describe(): string {
    return `connection ${this.localNodeId}→${this.peerNodeId}`;
  }

  protected closedDetail(): string {
    return `${this.describe()} is closed${this.closeReason ? `: ${this.closeReason.message}` : ''}`;
  }
}
