import { describe, expect, it } from 'vitest';
import { parsePortRangeFlag, sourceRange } from '../../src/table/source-range.js';
import type { DestinationCount } from '../../src/table/tally.js';

const dest = (over: Partial<DestinationCount>): DestinationCount => ({
  protocol: 'tcp',
  destination: '10.9.0.1',
  port: '443',
  entries: 5,
  sourcePorts: 5,
  busiestSource: '10.0.0.1',
  busiestSourceTranslated: false,
  states: [],
  ...over,
});

describe('the range a busiest source draws from', () => {
  const ctx = { snatSize: 64512, localSize: 28232, namespaceSize: (a: string) => (a === '172.16.0.9' ? 20 : undefined) };

  it('is the SNAT range for a source-NATed source, whatever its address', () => {
    expect(sourceRange(dest({ busiestSourceTranslated: true }), ctx)).toEqual({ size: 64512, kind: 'snat' });
    expect(sourceRange(dest({ busiestSourceTranslated: true, busiestSource: '172.16.0.9' }), ctx)).toEqual({ size: 64512, kind: 'snat' });
  });

  it("is the owning namespace's range where known, else the exporter namespace's", () => {
    expect(sourceRange(dest({ busiestSource: '172.16.0.9' }), ctx)).toEqual({ size: 20, kind: 'netns' });
    expect(sourceRange(dest({}), ctx)).toEqual({ size: 28232, kind: 'local' });
    expect(sourceRange(dest({ busiestSource: undefined, sourcePorts: 0 }), ctx)).toEqual({ size: 28232, kind: 'local' });
    expect(sourceRange(dest({}), { snatSize: 64512, localSize: 28232 })).toEqual({ size: 28232, kind: 'local' });
  });

  it('is absent for protocols without ports and where the local range is unknown', () => {
    expect(sourceRange(dest({ port: '', sourcePorts: undefined, busiestSource: undefined }), ctx)).toBeUndefined();
    expect(sourceRange(dest({}), { snatSize: 64512, localSize: undefined })).toBeUndefined();
  });
});

describe('--collector.table.snat-port-range', () => {
  it('parses low-high and names what is wrong otherwise', () => {
    expect(parsePortRangeFlag('1024-65535')).toEqual({ low: 1024, high: 65535 });
    expect(parsePortRangeFlag('5000-5000')).toEqual({ low: 5000, high: 5000 });
    expect(parsePortRangeFlag('1024')).toMatch(/low-high/);
    expect(parsePortRangeFlag('0-10')).toMatch(/1 <= low/);
    expect(parsePortRangeFlag('10-9')).toMatch(/10-9/);
    expect(parsePortRangeFlag('1-65536')).toMatch(/65535/);
  });
});
