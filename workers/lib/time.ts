/** A day in milliseconds: mandate extensions, renewal periods and notices count in days. */
export const DAY_MS = 24 * 60 * 60 * 1000;
