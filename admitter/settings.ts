import { integerSetting } from '../shared/config.js';

export interface AdmitterSettings {
  port: number;
  /** How often a tick runs (the timer), or, with --once, how often the cron runs it: the most credit a room keeps is two ticks' worth. */
  tickMs: number;
  /** One tick, then exit: for a cron trigger. */
  once: boolean;
}

/**
 * Every setting of the admitter process, read and checked once at
 * start-up (npm start checks them before it starts anything): a bad one is
 * a ConfigError there.
 */
export function admitterSettings(argv: string[] = process.argv.slice(2)): AdmitterSettings {
  return {
    port: integerSetting('PORT', 8080),
    tickMs: integerSetting('ADMITTER_TICK_MS', 1_000, 100, 3_600_000),
    once: argv.includes('--once'),
  };
}
