/**
 * Length-prefixed framing over a byte stream (`u32 length | body`), shared by the TCP fabric and
 * the client protocol: chunks go in as they arrive, whole bodies come out. A frame announcing
 * more than `maxBytes` (or nothing) is malformed: the stream cannot be parsed past it.
 */
export class MalformedFrameError extends Error {}

export class LengthPrefixedFrames {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly minBytes = 1,
  ) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Hands over the bytes pushed but not yet taken (a stream that changes framing) and empties. */
  release(): Buffer[] {
    const rest = this.chunks;
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }

  /** The next whole frame's body, or undefined until one has arrived. */
  take(): Buffer | undefined {
    if (this.buffered < 4) return undefined;
    if (this.chunks[0]!.length < 4) this.chunks = [Buffer.concat(this.chunks)];
    const length = this.chunks[0]!.readUInt32LE(0);
    if (length < this.minBytes || length > this.maxBytes)
      throw new MalformedFrameError(`frame of ${length} bytes`);
    if (this.buffered < 4 + length) return undefined;
    // Chunks are joined only once the whole frame is here (a large write arrives in many pieces).
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const body = all.subarray(4, 4 + length);
    const rest = all.subarray(4 + length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return body;
  }
}
