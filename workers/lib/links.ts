// Links one party hands on for another (a suspension's step_up_url, shown by
// an agent to its human): kept only when they lead to the page of the party
// they claim to, never to another site.

/** `url` as an absolute link when it is one on `origin`'s site, else null. */
export function linkOn(url: unknown, origin: string): string | null {
  if (typeof url !== 'string') return null;
  try {
    const parsed = new URL(url);
    return parsed.origin === new URL(origin).origin ? parsed.href : null;
  } catch {
    return null;
  }
}
