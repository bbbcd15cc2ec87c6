/**
 * The Fabric port: what replication needs from RDMA, and nothing more (DESIGN §4).
 *
 * - A node listens at an address; a peer connects with a handshake (its node id, an epoch and a
 *   credential). Connections are symmetric once open.
 * - Either side registers **regions**: memory the peer may write into with one-sided writes. The
 *   owner reads the bytes directly from `LocalRegion.bytes`; no protocol code runs when bytes land.
 *   A `RegionHandle` is plain data, sent to the peer inside a control message; the peer turns it
 *   into a `RemoteRegion` and writes at offsets within it.
 * - `write` resolves once the bytes are placed in the peer's region (the RDMA completion) and
 *   rejects with a typed FabricError when they cannot be (revoked region, out of bounds, closed or
 *   broken connection). Writes on one connection are placed in issue order. Writes issued together
 *   may complete together (tcp: consecutive writes into one region in one tick share an outcome;
 *   if one is refused, all of them reject, and those not refused may have landed).
 * - The caller may reuse a write's buffer as soon as `write` returns: a fabric that reads it later
 *   copies it at issue. To spare that copy, pass `TransferredBytes` (transfer.ts): `transferBytes`
 *   takes the caller's memory (its view is then empty, or left alone when the bytes were copied
 *   once instead), and the result is immutable by contract — read and post it any number of times,
 *   never write into it — so a fabric may keep a reference until the write completes (memory, tcp)
 *   or copy it as any Uint8Array (rdma). The caller's guarantee is the same either way.
 * - `send` carries ordered two-sided control messages (bytes; the codec is replication's). The
 *   ordering rule the protocol relies on (RC semantics): a message sent after a write's promise
 *   resolved is delivered after that write's bytes are in place. Messages are delivered in send
 *   order, each exactly once, or not at all once the connection breaks. The rule is one-way: a
 *   write issued after a message may already be placed when the receiver handles that message
 *   (on RDMA no code runs when bytes land).
 * - `revoke(region)` fences: every later write into it fails with RegionRevokedError, whatever
 *   connection it comes from. `close()` fails pending writes and tells the peer.
 */

/** Identifies a registered region on the wire: owner-chosen key (like an rkey) and size. */
export interface RegionHandle {
  readonly regionKey: number;
  readonly bytes: number;
}

/** Memory this side registered for the peer to write into. */
export interface LocalRegion {
  readonly handle: RegionHandle;
  /** The memory itself; one-sided writes land here. */
  readonly bytes: Uint8Array;
  readonly revoked: boolean;
}

/** A region the peer registered, as seen by the writer. */
export interface RemoteRegion {
  readonly handle: RegionHandle;
}

/** What a connecting side presents; the listener's `accept` decides. */
export interface Handshake {
  nodeId: string;
  /** Fencing token of the sender's view (0 when not region-specific). */
  epoch: number;
  /** Credential (cluster secret proof); the memory fabric compares it verbatim. */
  auth?: string;
}

export interface ConnectionStats {
  bytesWritten: number;
  writeCount: number;
  bytesSent: number;
  messagesSent: number;
  bytesReceived: number;
  messagesReceived: number;
}

export interface Connection {
  /** This side's node id and the peer's, from the handshake. */
  readonly localNodeId: string;
  readonly peerNodeId: string;
  readonly closed: boolean;

  registerRegion(bytes: number): LocalRegion;
  remoteRegion(handle: RegionHandle): RemoteRegion;
  /**
   * One-sided write of `bytes` at `offset` of the peer's region; resolves when placed. The caller
   * may reuse `bytes` at once; `TransferredBytes` (transfer.ts) spare the fabric a copy.
   */
  write(remote: RemoteRegion, offset: number, bytes: Uint8Array): Promise<void>;
  /** Ordered control message to the peer (copied; the caller may reuse `message`). */
  send(message: Uint8Array): void;
  /** The handler for messages from the peer; messages arriving before one is set are queued. */
  onMessage(handler: (message: Uint8Array) => void): void;
  /** Called once when the connection closes or breaks, with the reason. */
  onClose(handler: (reason: Error) => void): void;
  /** Fences a region this side registered: later writes into it fail. Idempotent. */
  revoke(region: LocalRegion): void;
  /** Closes the connection: pending writes reject with ConnectionClosedError. Idempotent. */
  close(): void;
  stats(): ConnectionStats;
}

export interface Listener {
  readonly address: string;
  close(): void;
}

export interface ListenOptions {
  /** This node's id, presented to connecting peers. */
  nodeId: string;
  /** Accepts or refuses a peer's handshake; refuse by returning a reason string. Default: accept. */
  accept?: (handshake: Handshake) => true | string;
}

export interface Fabric {
  readonly kind: 'memory' | 'tcp' | 'rdma';
  listen(
    address: string,
    options: ListenOptions,
    onConnection: (connection: Connection) => void,
  ): Promise<Listener>;
  connect(address: string, handshake: Handshake): Promise<Connection>;
  close(): Promise<void>;
}
