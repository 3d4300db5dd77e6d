import { describe, expect, it } from 'vitest';
import { FlagError, parseDuration, parseFlags, type FlagSpec } from '../../src/config/flags.js';
import { parseListenAddress, parseOptions } from '../../src/config/options.js';
import { COLLECTORS } from '../../src/collectors/index.js';

const specs: FlagSpec[] = [
  { name: 'web.listen-address', type: 'string', default: ':9746', help: '' },
  { name: 'collector.table', type: 'bool', default: 'true', help: '' },
  { name: 'collector.table.interval', type: 'duration', default: '30s', min: 1, help: '' },
  { name: 'collector.table.top-destinations', type: 'int', default: '10', min: 0, help: '' },
  { name: 'log.format', type: 'enum', default: 'logfmt', choices: ['logfmt', 'json'], help: '' },
];

describe('parseFlags', () => {
  it('uses defaults, then environment, then the command line', () => {
    const env = { CONNTRACK_EXPORTER_WEB_LISTEN_ADDRESS: '127.0.0.1:1', CONNTRACK_EXPORTER_LOG_FORMAT: 'json' };
    const { flags } = parseFlags(specs, ['--web.listen-address', '127.0.0.1:2'], env);
    expect(flags.string('web.listen-address')).toBe('127.0.0.1:2');
    expect(flags.string('log.format')).toBe('json');
    expect(flags.number('collector.table.interval')).toBe(30);
    expect(flags.explicit.has('log.format')).toBe(true);
    expect(flags.explicit.has('collector.table.interval')).toBe(false);
  });

  it('accepts --name, --no-name and --name=false for booleans', () => {
    expect(parseFlags(specs, ['--no-collector.table'], {}).flags.bool('collector.table')).toBe(false);
    expect(parseFlags(specs, ['--collector.table=false', '--collector.table'], {}).flags.bool('collector.table')).toBe(true);
    expect(parseFlags(specs, [], { CONNTRACK_EXPORTER_COLLECTOR_TABLE: 'false' }).flags.bool('collector.table')).toBe(false);
  });

  it('parses durations into seconds', () => {
    expect(parseFlags(specs, ['--collector.table.interval=1m30s'], {}).flags.number('collector.table.interval')).toBe(90);
    expect(parseDuration('500ms')).toBe(0.5);
    expect(parseDuration('2h')).toBe(7200);
    expect(parseDuration('30')).toBeUndefined();
    expect(parseDuration('1x')).toBeUndefined();
  });

  it.each([
    [['--nope'], 'unknown flag --nope'],
    [['--log.format=xml'], 'invalid value "xml" for flag --log.format: expected one of logfmt, json'],
    [['--collector.table.interval=soon'], 'invalid value "soon" for flag --collector.table.interval'],
    [['--collector.table.interval=0s'], 'must be at least 1s'],
    [['--collector.table.top-destinations=-1'], 'must be at least 0'],
    [['--collector.table.top-destinations=ten'], 'expected an integer'],
    [['--web.listen-address'], 'flag --web.listen-address needs a value'],
    [['positional'], 'unexpected argument "positional"'],
    [['--no-collector.table=1'], 'flag --no-collector.table takes no value'],
    [['--collector.table=maybe'], 'expected true or false'],
  ])('rejects %j with a message naming the flag', (argv, message) => {
    expect(() => parseFlags(specs, argv, {})).toThrow(FlagError);
    expect(() => parseFlags(specs, argv, {})).toThrow(message);
  });

  it('names the environment variable when that is the bad value', () => {
    expect(() => parseFlags(specs, [], { CONNTRACK_EXPORTER_LOG_FORMAT: 'xml' })).toThrow(
      'environment variable CONNTRACK_EXPORTER_LOG_FORMAT',
    );
  });

  it('reports --help and --version', () => {
    expect(parseFlags(specs, ['--help'], {}).action).toBe('help');
    expect(parseFlags(specs, ['--version'], {}).action).toBe('version');
  });
});

describe('exporter options', () => {
  it('declares --[no-]collector.<name> for every collector', () => {
    const { flags } = parseOptions(COLLECTORS, ['--no-collector.stat'], {});
    expect(flags.bool('collector.stat')).toBe(false);
    expect(flags.bool('collector.conntrack')).toBe(true);
    expect(flags.string('web.listen-address')).toBe(':9746');
    expect(flags.string('path.procfs')).toBe('/proc');
  });

  it('validates the listen address', () => {
    expect(() => parseOptions(COLLECTORS, ['--web.listen-address=9746'], {})).toThrow('--web.listen-address');
    expect(parseListenAddress(':9746')).toEqual({ host: undefined, port: 9746 });
    expect(parseListenAddress('127.0.0.1:80')).toEqual({ host: '127.0.0.1', port: 80 });
    expect(parseListenAddress('[::1]:9746')).toEqual({ host: '::1', port: 9746 });
    expect(parseListenAddress('localhost:70000')).toBeUndefined();
  });
});
