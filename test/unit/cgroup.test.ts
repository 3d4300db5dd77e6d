import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCgroupFile, parseCgroupPath } from '../../src/procfs/cgroup.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const fixture = (name: string): string => readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'cgroup', name), 'utf8');

describe('parseCgroupFile over real-shaped /proc/<pid>/cgroup files', () => {
  const cases: [string, { podUid?: string; containerId?: string }][] = [
    [
      'v1-cgroupfs-docker-4.19',
      {
        podUid: '0c5e9f5a-3d3b-4a57-9e1a-0a8b7f3e2d11',
        containerId: '3f8a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8',
      },
    ],
    [
      'v1-systemd-containerd-5.4',
      {
        podUid: '7d2b4e61-93a0-4c1f-b7de-5f6a0c9e8b12',
        containerId: 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90',
      },
    ],
    [
      'v1-systemd-docker-4.15',
      {
        podUid: '5e8c1d0a-7f42-4b9e-a3c1-2d6f8e9a0b47',
        containerId: '9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d',
      },
    ],
    [
      'v1-cgroupfs-crio-4.18',
      {
        podUid: '2f4a6c8e-0b1d-4e3f-8a5b-7c9d1e3f5a7b',
        containerId: '4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c',
      },
    ],
    [
      'v1-cgroupfs-static-pod-4.19',
      {
        podUid: '6b1e3f0c9d2a4b5c8e7f1a0d3c6b9e2f',
        containerId: '0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9',
      },
    ],
    [
      'v2-systemd-containerd-6.1',
      {
        podUid: 'd4c3b2a1-0f9e-4d8c-b7a6-958473625140',
        containerId: '5f6e7d8c9b0a1f2e3d4c5b6a79887766554433221100ffeeddccbbaa99887766',
      },
    ],
    [
      'v2-systemd-crio-6.6',
      {
        podUid: '8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d',
        containerId: 'e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382716051f2e3d4c5b6a79',
      },
    ],
    [
      'v2-cgroupfs-containerd-5.15',
      {
        podUid: '3c2b1a09-8f7e-4d6c-a5b4-c3d2e1f0a9b8',
        containerId: '7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f',
      },
    ],
    [
      'v2-systemd-containerd-cgroupns-6.8',
      {
        podUid: '1e2d3c4b-5a69-4788-96a5-b4c3d2e1f0a9',
        containerId: 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00',
      },
    ],
    [
      'v2-kind-nested-6.18',
      {
        podUid: '9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a',
        containerId: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      },
    ],
    ['v2-docker-plain-6.1', { containerId: 'fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210' }],
    ['v1-docker-plain-2.6.32', { containerId: 'b5a4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4' }],
    ['v2-host-6.18', {}],
    ['v1-host-4.19', {}],
  ];
  it.each(cases)('%s', (name, expected) => {
    expect(parseCgroupFile(fixture(name))).toEqual(expected);
  });
});

describe('parseCgroupPath', () => {
  it('finds the pod in a pod-level cgroup without a container leaf', () => {
    expect(parseCgroupPath('/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d2b4e61_93a0_4c1f_b7de_5f6a0c9e8b12.slice')).toEqual({
      podUid: '7d2b4e61-93a0-4c1f-b7de-5f6a0c9e8b12',
    });
  });

  it('does not take the kubepods slices, conmon scopes or short hex names for pods or containers', () => {
    expect(parseCgroupPath('/kubepods.slice/kubepods-besteffort.slice')).toEqual({});
    expect(parseCgroupPath('/machine.slice/crio-conmon-e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382716051f2e3d4c5b6a79.scope')).toEqual({});
    expect(parseCgroupPath('/user.slice/user-1000.slice/session-3.scope/deadbeef')).toEqual({});
  });

  it('prefers a line naming both pod and container over a bare pod line in a hybrid file', () => {
    const text = [
      '3:memory:/kubepods/pod3c2b1a09-8f7e-4d6c-a5b4-c3d2e1f0a9b8',
      '1:name=systemd:/kubepods/pod3c2b1a09-8f7e-4d6c-a5b4-c3d2e1f0a9b8/7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f',
      '',
    ].join('\n');
    expect(parseCgroupFile(text)).toEqual({
      podUid: '3c2b1a09-8f7e-4d6c-a5b4-c3d2e1f0a9b8',
      containerId: '7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f',
    });
  });

  it('ignores garbage lines', () => {
    expect(parseCgroupFile('no colons here\n\n')).toEqual({});
  });
});
