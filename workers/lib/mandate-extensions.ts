// How long a mandate is extended for (PROTOCOL.md §2.1: a later end is a new
// mandate that supersedes it). Shared by the orchestrator's dashboard and API
// and by the agent SDK, which asks for extensions of its own.

/** The lengths the dashboard offers, in days from now: a mandate lasts a year at most. */
export const EXTENSION_DAYS = [30, 90, 365] as const;

/** When an extension of `days` asked for at `now` (ms) ends. */
export const extensionEnd = (days: number, now = Date.now()) => now + days * 24 * 60 * 60 * 1000;

/** The offered lengths that extend a mandate ending at `expiresAt`: an extension ends later than the mandate it extends. */
export const extensionsOf = (expiresAt: string, now = Date.now()) => EXTENSION_DAYS.filter((days) => extensionEnd(days, now) > Date.parse(expiresAt));
