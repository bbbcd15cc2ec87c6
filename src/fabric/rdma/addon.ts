/**
 * Loading the native RDMA addon (native/, built by `npm run build:native`) and its typed surface.
 *
 * The addon is looked up once: `TALOS_RDMA_ADDON` (a path to the .node file) if set, else
 * `native/build/Release/talos_rdma.node` in the nearest ancestor directory of this module that holds
 * `native/binding.gyp` (the checkout, from src/ under jest or from dist/ when built). When it is not
 * there or does not load, `loadRdmaAddon()` throws RdmaUnavailableError naming the packages to
 * install; nothing else in Talos needs it. `verbsError` turns the addon's errors (an errno name in
 * `code`, the verbs call in `syscall`) into the typed RdmaVerbsError / RdmaDeviceError.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RdmaDeviceError, RdmaUnavailableError, RdmaVerbsError } from '../../errors.js';

export interface NativeDeviceInfo {
  name: string;
  guid: string;
}

export interface NativePortInfo {
  state: string;
  activeMtu: number;
  gidTableLength: number;
  maxMessageBytes: number;
}

export interface NativeDevice {
  readonly name: string;
  queryGid(port: number, index: number): Buffer;
  queryPort(port: number): NativePortInfo;
  close(): void;
}

export interface NativeProtectionDomain {
  close(): void;
}

/** Natively allocated memory, registered with the PD; `buffer` is the memory itself (external). */
export interface NativeMemoryRegion {
  readonly buffer: ArrayBuffer;
  readonly address: bigint;
  /** Undefined once deregistered or closed. */
  readonly rkey: number | undefined;
  readonly lkey: number | undefined;
  readonly length: number;
  readonly registered: boolean;
  /** The rkey dies (later remote writes with it fail); the bytes stay readable. Idempotent. */
  deregister(): void;
  /** Registers the memory again; returns the new rkey. */
  reregister(): number;
  close(): void;
}

export interface NativeCompletion {
  wrId: number;
  /** `IBV_WC_SUCCESS`, `IBV_WC_REM_ACCESS_ERR`, `IBV_WC_WR_FLUSH_ERR`... */
  status: string;
  opcode: 'SEND' | 'RDMA_WRITE' | 'RDMA_READ' | 'RECV' | 'RECV_RDMA_WITH_IMM' | 'OTHER' | 'UNKNOWN';
  byteLength: number;
  qpNum: number;
  imm?: number;
  vendorError?: number;
}

export interface NativeCompletionQueue {
  close(): void;
}

export interface QueuePairOptions {
  maxSendWr?: number;
  maxRecvWr?: number;
  maxInlineBytes?: number;
  port?: number;
}

export interface QueuePairPeer {
  remoteQpNum: number;
  remotePsn: number;
  remoteGid: Buffer;
  localPsn: number;
  gidIndex: number;
  port?: number;
  mtu?: number;
}

export interface WriteRequest {
  wrId: number;
  mr: NativeMemoryRegion;
  offset: number;
  length: number;
  remoteAddress: bigint;
  rkey: number;
  /** Present: RDMA_WRITE_WITH_IMM (consumes a receive on the peer). */
  imm?: number;
}

export interface LocalRequest {
  wrId: number;
  mr?: NativeMemoryRegion;
  offset?: number;
  length?: number;
}

export interface NativeQueuePair {
  readonly qpNum: number | undefined;
  /** RESET, INIT, RTR, RTS, ERR... or CLOSED. */
  readonly state: string;
  connect(peer: QueuePairPeer): void;
  postWrites(requests: WriteRequest[]): number;
  postSends(requests: LocalRequest[]): number;
  postRecvs(requests: LocalRequest[]): number;
  /** Moves the QP to ERR: outstanding work completes with IBV_WC_WR_FLUSH_ERR. */
  setError(): void;
  close(): void;
}

export interface NativeCmEvent {
  type: string;
  status: number;
  id?: NativeCmId;
  listenId?: NativeCmId;
  privateData?: Buffer;
}

export interface NativeCmChannel {
  close(): void;
}

export interface NativeCmId {
  listen(host: string, port: number, backlog?: number): number;
  resolveAddress(host: string, port: number, timeoutMs: number, sourceHost?: string): void;
  resolveRoute(timeoutMs: number): void;
  createQp(
    pd: NativeProtectionDomain,
    sendCq: NativeCompletionQueue,
    recvCq: NativeCompletionQueue,
    options: QueuePairOptions,
  ): NativeQueuePair;
  connect(privateData?: Buffer): void;
  accept(privateData?: Buffer): void;
  reject(privateData?: Buffer): void;
  disconnect(): void;
  deviceName(): string | undefined;
  port(): number;
  close(): void;
}

export interface RdmaAddon {
  /** `viaRdmaCm`: librdmacm's context for the device (PDs/CQs for QPs on rdma_cm ids). */
  Device: new (
    name: string,
    viaRdmaCm?: boolean,
  ) => NativeDevice;
  ProtectionDomain: new (device: NativeDevice) => NativeProtectionDomain;
  MemoryRegion: new (pd: NativeProtectionDomain, bytes: number, remoteWrite?: boolean) => NativeMemoryRegion;
  CompletionQueue: new (
    device: NativeDevice,
    depth: number,
    onCompletions: (batch: NativeCompletion[]) => void,
  ) => NativeCompletionQueue;
  QueuePair: new (
    pd: NativeProtectionDomain,
    sendCq: NativeCompletionQueue,
    recvCq: NativeCompletionQueue,
    options: QueuePairOptions,
  ) => NativeQueuePair;
  CmChannel: new (onEvent: (event: NativeCmEvent) => void) => NativeCmChannel;
  CmId: new (channel: NativeCmChannel) => NativeCmId;
  listDevices(): NativeDeviceInfo[];
  forkInitStatus(): number;
}

let cached: { addon?: RdmaAddon; error?: RdmaUnavailableError } | undefined;

/** Where the addon is expected (whether or not it exists). */
export function rdmaAddonPath(): string {
  const fromEnv = process.env.TALOS_RDMA_ADDON;
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'native', 'binding.gyp'))) break;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return join(dir, 'native', 'build', 'Release', 'talos_rdma.node');
}

/** The addon, or RdmaUnavailableError (cached: the answer does not change within a process). */
export function loadRdmaAddon(): RdmaAddon {
  if (cached === undefined) {
    const path = rdmaAddonPath();
    if (!existsSync(path)) {
      cached = { error: new RdmaUnavailableError(`the native addon is not built (${path} is missing)`) };
    } else {
      try {
        const require = createRequire(import.meta.url);
        cached = { addon: require(path) as RdmaAddon };
      } catch (err) {
        cached = {
          error: new RdmaUnavailableError(
            `the native addon ${path} does not load: ${(err as Error).message}`,
            {
              cause: err,
            },
          ),
        };
      }
    }
  }
  if (cached.error !== undefined) throw cached.error;
  return cached.addon!;
}

/** True when the addon loads (whether or not a device exists). */
export function rdmaAddonAvailable(): boolean {
  try {
    loadRdmaAddon();
    return true;
  } catch {
    return false;
  }
}

/** The RDMA devices of this machine; empty when there are none or the addon is unavailable. */
export function rdmaDevices(): NativeDeviceInfo[] {
  return rdmaAddonAvailable() ? loadRdmaAddon().listDevices() : [];
}

/** The addon's error (errno name in `code`, verbs call in `syscall`) as a typed RdmaVerbsError. */
export function verbsError(err: unknown): RdmaVerbsError {
  if (err instanceof RdmaVerbsError) return err;
  const e = err as { code?: unknown; syscall?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : 'EIO';
  const call = typeof e.syscall === 'string' ? e.syscall : 'verbs';
  const message = typeof e.message === 'string' ? e.message : String(err);
  if (call === 'ibv_open_device') return new RdmaDeviceError(call, code, message, { cause: err });
  return new RdmaVerbsError(call, code, message, { cause: err });
}
