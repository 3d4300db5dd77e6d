/**
 * Every collector the exporter knows, in the order they appear in --help.
 * A collector is added here and nowhere else; its flags come with it.
 */
import type { CollectorDefinition } from './collector.js';
import { conntrackCollector } from './conntrack.js';
import { eventsCollector } from './events.js';
import { kernelLogCollector } from './kernel-log.js';
import { statCollector } from './stat.js';
import { tableCollector } from './table.js';
import { memoryCollector } from './memory.js';
import { netnsCollector } from './netns.js';
import { portsCollector } from './ports.js';
import { timeoutsCollector } from './timeouts.js';

export const COLLECTORS: readonly CollectorDefinition[] = [conntrackCollector, statCollector, tableCollector, memoryCollector, portsCollector, timeoutsCollector, netnsCollector, kernelLogCollector, eventsCollector];
