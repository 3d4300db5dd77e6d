import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsRoot } from '../../src/procfs/fs.js';
import { addressOwners, parseFibTrieLocal, parseIfInet6, readLocalAddresses } from '../../src/procfs/local-addresses.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const fixture = (name: string): string => readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'netns-addresses', name), 'utf8');

describe('parseFibTrieLocal', () => {
  it('finds the /32 host LOCAL leaves of a 6.18 pod namespace, once each, and not the loopback net or broadcasts', () => {
    expect(parseFibTrieLocal(fixture('6.18-pod/fib_trie'))).toEqual({ addresses: ['10.244.1.17', '10.244.1.18', '127.0.0.1'], skipped: 0 });
  });

  it('reads the pre-4.1 layout (addresses only in the Local table) and other tables by id', () => {
    const old = [
      'Main:',
      '  +-- 0.0.0.0/0 3 0 5',
      '     |-- 0.0.0.0',
      '        /0 universe UNICAST',
      '     |-- 10.0.2.0',
      '        /24 link UNICAST',
      'Local:',
      '  +-- 0.0.0.0/0 3 0 5',
      '     |-- 10.0.2.15',
      '        /32 host LOCAL',
      '     |-- 10.0.2.255',
      '        /32 link BROADCAST',
      'Id 100:',
      '  |-- 192.168.9.1',
      '     /32 link UNICAST',
      '',
    ].join('\n');
    expect(parseFibTrieLocal(old)).toEqual({ addresses: ['10.0.2.15'], skipped: 0 });
  });

  it('keeps an address whose leaf also carries a network route, and counts lines it does not know', () => {
    const text = ['Main:', '  |-- 10.1.0.0', '     /16 link UNICAST', '     /32 host LOCAL', '  |-- 999.1.1.1', '     /32 host LOCAL', 'garbage here'].join('\n');
    expect(parseFibTrieLocal(text)).toEqual({ addresses: ['10.1.0.0'], skipped: 2 });
  });
});

describe('parseIfInet6', () => {
  it('reads every address with its scope, in RFC 5952 text', () => {
    const { entries, skipped } = parseIfInet6(fixture('6.18-pod/if_inet6'));
    expect(skipped).toBe(0);
    expect(entries.map((e) => [e.address, e.scope, e.prefixLength, e.device])).toEqual([
      ['fe80::f84a:5fff:fedc:c77e', 0x20, 64, 'veth-b'],
      ['fd00:10:244:1::11', 0x00, 64, 'veth-a'],
      ['fe80::6821:83ff:feaa:49b5', 0x20, 64, 'veth-a'],
      ['::1', 0x10, 128, 'lo'],
    ]);
  });

  it('counts malformed lines', () => {
    expect(parseIfInet6('xyz 01 80 10 80 lo\n00000000000000000000000000000001 01 80 10 80       lo\n').skipped).toBe(1);
  });
});

describe('addressOwners', () => {
  it('maps each address to the one namespace holding it and drops shared ones', () => {
    const owners = addressOwners([
      { inode: 1, addresses: ['127.0.0.1', '192.0.2.2', '::1'] },
      { inode: 2, addresses: ['127.0.0.1', '10.244.1.17', '::1', '10.244.1.17'] },
      { inode: 3, addresses: ['127.0.0.1', '10.244.1.18', 'fe80::1'] },
      { inode: 4, addresses: ['fe80::1'] },
    ]);
    expect([...owners].sort()).toEqual([
      ['10.244.1.17', 2],
      ['10.244.1.18', 3],
      ['192.0.2.2', 1],
    ]);
  });
});

describe('readLocalAddresses', () => {
  it('reads both files of a pid, and none where they are missing', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cte-addr-'));
    try {
      mkdirSync(join(root, '42', 'net'), { recursive: true });
      writeFileSync(join(root, '42', 'net', 'fib_trie'), fixture('6.18-pod/fib_trie'));
      writeFileSync(join(root, '42', 'net', 'if_inet6'), fixture('6.18-pod/if_inet6'));
      const got = await readLocalAddresses(new FsRoot(root), 42);
      expect(got.ipv4).toEqual(['10.244.1.17', '10.244.1.18', '127.0.0.1']);
      expect(got.ipv6).toContain('fd00:10:244:1::11');
      expect(got.ipv6).toContain('::1');
      expect(await readLocalAddresses(new FsRoot(root), 43)).toEqual({ ipv4: [], ipv6: [], skipped: 0 });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
