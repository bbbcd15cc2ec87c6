/**
 * Certificates for the TLS tests, made with the openssl binary in a temporary directory: two
 * independent CAs, and leaf certificates (P-256 keys, SANs 127.0.0.1 and localhost, usable as
 * server and client) signed by one of them — valid, or expired a day ago.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pem {
  cert: Buffer;
  key: Buffer;
  certFile: string;
  keyFile: string;
}

export interface TestCa extends Pem {
  name: string;
  /** A leaf certificate this CA signs (`expired`: its validity ended a day ago). */
  issue(commonName: string, options?: { expired?: boolean }): Pem;
}

export interface TestPki {
  dir: string;
  ca(name: string): TestCa;
  remove(): void;
}

const OPENSSL = process.env.TALOS_OPENSSL_BIN ?? '/usr/bin/openssl';
const openssl = (cwd: string, args: string[]): void => {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
};
const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'talos-pki-'));
  const pem = (base: string): Pem => ({
    cert: readFileSync(join(dir, `${base}.pem`)),
    key: readFileSync(join(dir, `${base}.key`)),
    certFile: join(dir, `${base}.pem`),
    keyFile: join(dir, `${base}.key`),
  });
  return {
    dir,
    ca(name) {
      openssl(dir, [
        'req',
        '-x509',
        ...KEY,
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.pem`,
        '-subj',
        `/CN=${name}`,
        '-days',
        '30',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ]);
      return {
        name,
        ...pem(name),
        issue(commonName, options = {}) {
          const base = `${name}-${commonName}${options.expired ? '-expired' : ''}`;
          writeFileSync(
            join(dir, `${base}.ext`),
            [
              'subjectAltName=IP:127.0.0.1,DNS:localhost',
              'basicConstraints=CA:FALSE',
              'keyUsage=critical,digitalSignature,keyEncipherment',
              'extendedKeyUsage=serverAuth,clientAuth',
              '',
            ].join('\n'),
          );
          openssl(dir, [
            'req',
            ...KEY,
            '-keyout',
            `${base}.key`,
            '-out',
            `${base}.csr`,
            '-subj',
            `/CN=${commonName}`,
          ]);
          openssl(dir, [
            'x509',
            '-req',
            '-in',
            `${base}.csr`,
            '-CA',
            `${name}.pem`,
            '-CAkey',
            `${name}.key`,
            '-CAcreateserial',
            '-days',
            options.expired ? '-1' : '30',
            '-extfile',
            `${base}.ext`,
            '-out',
            `${base}.pem`,
          ]);
          return pem(base);
        },
      };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
