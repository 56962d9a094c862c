// How every benchmark here times and summarises: wall time of one phase, two
// phases timed in turn (each round starting with the other one, so that
// neither is always the one right after), and the median round, so that a
// pause on a shared machine weighs on one round, not on the figure.

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** Times `a` and `b` in `round`, `a` first in even rounds and `b` first in odd ones: their times in ms. */
export async function timedInTurn(round: number, a: () => Promise<number>, b: () => Promise<number>): Promise<[number, number]> {
  if (round % 2 === 0) {
    const first = await a();
    return [first, await b()];
  }
  const first = await b();
  return [await a(), first];
}

export function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
