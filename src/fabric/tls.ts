/**
 * TLS for the sockets Talos opens: the TCP fabric and the rdma fabric's side channel (mutual TLS
 * between nodes, socket-frames.ts) and the client protocol (a node's client endpoint and
 * TalosClient). Everything here is node's `tls` module configured, never hand-rolled crypto:
 * certificates are PEM (a CA bundle, a certificate chain, its key), peers are verified against the
 * CA — chain, validity dates and the name or IP address dialed — and a verification failure is told
 * apart from an unreachable peer, so callers can refuse for good instead of retrying.
 *
 * Bearer tokens (the client protocol's second way to authenticate) are compared here as well, in
 * constant time: SHA-256 of both sides, then `timingSafeEqual`, over every configured token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions, TlsOptions as NodeTlsServerOptions } from 'node:tls';
import { InvalidArgumentError } from '../errors.js';

/** PEM material: the CA that signs the peers, and (for a server or a mutual-TLS client) our chain and key. */
export interface TlsCredentials {
  ca: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

/** The same as files (`talos node --tls-ca --tls-cert --tls-key`). */
export interface TlsFiles {
  caFile: string;
  certFile?: string;
  keyFile?: string;
}

/** Reads PEM files once; a missing or unreadable file is InvalidArgumentError naming it. */
export function readTlsFiles(files: TlsFiles): TlsCredentials {
  if ((files.certFile === undefined) !== (files.keyFile === undefined)) {
    throw new InvalidArgumentError('TLS: a certificate needs its key (--tls-cert with --tls-key)');
  }
  const read = (path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new InvalidArgumentError(`TLS: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  return {
    ca: read(files.caFile),
    ...(files.certFile === undefined ? {} : { cert: read(files.certFile) }),
    ...(files.keyFile === undefined ? {} : { key: read(files.keyFile) }),
  };
}

/**
 * Server side. `requireClientCertificate`: refuse in the TLS handshake any peer without a
 * certificate from the CA (the fabric: mutual TLS). Otherwise a certificate is asked for but
 * optional, and the caller checks `socket.authorized` (the client endpoint: a certificate is one
 * way to authenticate, a token the other).
 */
export function tlsServerOptions(
  credentials: TlsCredentials,
  requireClientCertificate: boolean,
): NodeTlsServerOptions {
  if (credentials.cert === undefined || credentials.key === undefined) {
    throw new InvalidArgumentError('TLS: a server needs a certificate and its key');
  }
  return {
    ca: credentials.ca,
    cert: credentials.cert,
    key: credentials.key,
    requestCert: true,
    rejectUnauthorized: requireClientCertificate,
    minVersion: 'TLSv1.2',
  };
}

/** Client side: verify the server against the CA and the host dialed; present our certificate if any. */
export function tlsClientOptions(credentials: TlsCredentials, host: string, port: number): ConnectionOptions {
  return {
    host,
    port,
    ca: credentials.ca,
    ...(credentials.cert === undefined ? {} : { cert: credentials.cert }),
    ...(credentials.key === undefined ? {} : { key: credentials.key }),
    // SNI is for names only; an IP address is still checked against the certificate's IP SANs.
    ...(isIP(host) === 0 ? { servername: host } : {}),
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  };
}

/** OpenSSL's verification codes (X509_V_ERR_*) as node reports them on `err.code`. */
const VERIFICATION_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'INVALID_CA',
  'INVALID_PURPOSE',
]);

/**
 * Whether a socket error is TLS refusing the peer (or the peer refusing us: a TLS alert such as
 * unknown CA, bad or expired certificate, certificate required), rather than the network. Returns
 * the reason, or undefined for anything else (refused, reset, timed out: worth a retry).
 */
export function tlsRefusal(err: unknown): string | undefined {
  // Duck-typed: errors raised inside node's internals need not be `instanceof` this realm's Error.
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code !== 'string') return undefined;
  if (VERIFICATION_CODES.has(code)) return `${code}: ${String(message)}`;
  if (code.startsWith('ERR_SSL_') && /ALERT|CERTIFICATE|VERIFY/i.test(code))
    return `${code}: ${String(message)}`;
  return undefined;
}

/** Bearer tokens from a file: one per line; blank lines and `#` comments are skipped. */
export function readTokenFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read the token file ${path}: ${(err as Error).message}`);
  }
  const tokens = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'));
  if (tokens.length === 0) throw new InvalidArgumentError(`the token file ${path} holds no token`);
  return tokens;
}

/** The first line of a token file (a client's `--token-file`). */
export function readClientToken(path: string): string {
  return readTokenFile(path)[0]!;
}

/**
 * A set of accepted tokens, checked in constant time: every candidate is hashed to 32 bytes and
 * compared with every accepted token's hash, with no early exit, so neither the length nor the
 * position of a match leaks through timing.
 */
export class TokenSet {
  private readonly digests: Buffer[];

  constructor(tokens: readonly string[]) {
    if (tokens.length === 0) throw new InvalidArgumentError('a token set needs at least one token');
    this.digests = tokens.map(digest);
  }

  accepts(candidate: string): boolean {
    const d = digest(candidate);
    let match = false;
    for (const accepted of this.digests) match = timingSafeEqual(d, accepted) || match;
    return match;
  }
}

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();
