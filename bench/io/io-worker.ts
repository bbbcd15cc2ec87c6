/**
 * The dedicated I/O thread of bench/io (the "worker" designs of issue 15 item 1): it runs the
 * blocking calls — pwrite, fdatasync, pread — so the node's JS thread never waits on the disk.
 *
 * Two ways to talk to it, both measured:
 * - `message`: one postMessage per request; the payload's ArrayBuffer is transferred (no copy),
 *   the reply is a postMessage back (for a read: the bytes, transferred).
 * - `shared`: requests and completions go through a SharedArrayBuffer — a slot per request with
 *   its opcode, offset, length and status, and one shared data area the caller copies payloads
 *   into (and read bytes out of). The worker sleeps in Atomics.wait on a request counter; the
 *   JS thread learns of completions with Atomics.waitAsync on a completion counter, so neither
 *   side polls and no message is built per request.
 */
import { fdatasyncSync, readSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

export interface MessageRequest {
  id: number;
  op: 'write' | 'sync' | 'read';
  fd: number;
  offset: number;
  length: number;
  bytes?: ArrayBuffer;
}

/** Layout of the shared control area (Int32 words). */
export const SHARED = {
  /** Word 0: requests posted (the worker waits on it). */
  posted: 0,
  /** Word 1: requests completed (the JS thread waits on it). */
  completed: 1,
  /** Slots start here, SLOT_WORDS each: op, fd, offset (in 4 KiB pages), length, data offset, status. */
  slots: 2,
  slotWords: 6,
  slotCount: 256,
} as const;
export const OP_CODES = { write: 1, sync: 2, read: 3 } as const;

const port = parentPort;
if (port !== null) {
  const data = workerData as
    | { mode: 'message' }
    | { mode: 'shared'; control: SharedArrayBuffer; data: SharedArrayBuffer };
  if (data.mode === 'message') {
    port.on('message', (request: MessageRequest) => {
      if (request.op === 'write') {
        writeSync(request.fd, new Uint8Array(request.bytes!), 0, request.length, request.offset);
        port.postMessage({ id: request.id });
      } else if (request.op === 'sync') {
        fdatasyncSync(request.fd);
        port.postMessage({ id: request.id });
      } else {
        const bytes = new Uint8Array(request.length);
        readSync(request.fd, bytes, 0, request.length, request.offset);
        port.postMessage({ id: request.id, bytes: bytes.buffer }, [bytes.buffer]);
      }
    });
  } else {
    const control = new Int32Array(data.control);
    const area = new Uint8Array(data.data);
    let next = 0; // the next request this worker serves
    for (;;) {
      while (Atomics.load(control, SHARED.posted) === next) Atomics.wait(control, SHARED.posted, next);
      const slot = SHARED.slots + (next % SHARED.slotCount) * SHARED.slotWords;
      const op = control[slot]!;
      const fd = control[slot + 1]!;
      const offset = control[slot + 2]! * 4096;
      const length = control[slot + 3]!;
      const at = control[slot + 4]!;
      if (op === 0) break; // shutdown
      const view = area.subarray(at, at + length);
      if (op === OP_CODES.write) writeSync(fd, view, 0, length, offset);
      else if (op === OP_CODES.sync) fdatasyncSync(fd);
      else readSync(fd, view, 0, length, offset);
      control[slot + 5] = 1;
      next++;
      Atomics.store(control, SHARED.completed, next);
      Atomics.notify(control, SHARED.completed);
    }
  }
}
