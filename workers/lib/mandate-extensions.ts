// How long a mandate is extended for (PROTOCOL.md §2.1: a later end is a new
// mandate that supersedes it). Shared by the orchestrator's dashboard and API
// and by the agent SDK, which asks for extensions of its own.

import { DAY_MS } from './time';

/** The lengths the dashboard offers, in days from now: a mandate lasts a year at most. */
export const EXTENSION_DAYS = [30, 90, 365] as const;

/** When an extension of `days` asked for at `now` (ms) ends. */
export const extensionEnd = (days: number, now = Date.now()) => now + days * DAY_MS;

/**
 * Whether an extension ending at `end` extends a mandate ending at `expiresAt`: by a day at least (the same length
 * asked for again at once would add nothing but another approval).
 */
export const extendsBeyond = (end: number, expiresAt: string) => end >= Date.parse(expiresAt) + DAY_MS;

/** The offered lengths that extend a mandate ending at `expiresAt`. */
export const extensionsOf = (expiresAt: string, now = Date.now()) => EXTENSION_DAYS.filter((days) => extendsBeyond(extensionEnd(days, now), expiresAt));
