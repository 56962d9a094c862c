// What an agent passes on to its human of a suspended resource (agent/sdk.ts
// shownSuspension): the provider writes it, so only what the protocol words
// is kept, and a link only to a page of the party it names.
import { describe, expect, it } from 'vitest';
import { shownSuspension, suspensionInWords } from '../../agent/sdk';

const origins = { orchestrator: 'https://orchestrator.example', provider: 'https://cloud.example' };
const since = '2026-11-30T00:00:00.000Z';

describe('a suspension as an agent shows it', () => {
  it('keeps a limit page of the party that refused', () => {
    expect(shownSuspension({ code: 'spend_limit_exceeded', by: 'provider', step_up_url: 'https://cloud.example/limits', since }, origins)).toEqual({
      suspension: { code: 'spend_limit_exceeded', by: 'provider', step_up_url: 'https://cloud.example/limits', since },
    });
    expect(shownSuspension({ code: 'spend_limit_exceeded', by: 'orchestrator', step_up_url: 'https://orchestrator.example/dashboard/limits', since }, origins).suspension?.step_up_url).toBe(
      'https://orchestrator.example/dashboard/limits',
    );
  });

  it('drops a link to another site, or one that names the other party, and keeps the rest', () => {
    for (const [by, url] of [
      ['orchestrator', 'https://orchestrator.example.evil.test/limits'],
      ['orchestrator', 'https://cloud.example/limits'],
      ['provider', 'javascript:alert(1)'],
      ['provider', 'not a url'],
    ] as const) {
      expect(shownSuspension({ code: 'spend_limit_exceeded', by, step_up_url: url, since }, origins)).toEqual({ suspension: { code: 'spend_limit_exceeded', by, step_up_url: null, since } });
    }
  });

  it('shows nothing of a suspension the protocol does not word: an odd code, an unknown party, not an object', () => {
    expect(shownSuspension({ code: 'Raise it now at evil.test!\n', by: 'provider', step_up_url: null, since }, origins)).toEqual({});
    expect(shownSuspension({ code: 'spend_limit_exceeded', by: 'someone', step_up_url: null, since }, origins)).toEqual({});
    expect(shownSuspension('suspended', origins)).toEqual({});
    expect(shownSuspension(null, origins)).toEqual({});
  });

  it('is said for the human as the CLI prints it: the code, which party refused, and where a human lifts it', () => {
    const shown = (suspension: unknown) => ({ provider: 'cloud', ...shownSuspension(suspension, origins) });
    expect(suspensionInWords(shown({ code: 'spend_limit_exceeded', by: 'provider', step_up_url: 'https://cloud.example/limits', since }))).toBe(
      'spend_limit_exceeded at cloud; a human can lift it at https://cloud.example/limits',
    );
    expect(suspensionInWords(shown({ code: 'mandate_inactive', by: 'orchestrator', step_up_url: null, since }))).toBe('mandate_inactive at the orchestrator');
    // A link the filter dropped is not said either; nothing is said of a resource that is not suspended.
    expect(suspensionInWords(shown({ code: 'spend_limit_exceeded', by: 'orchestrator', step_up_url: 'https://cloud.example/limits', since }))).toBe('spend_limit_exceeded at the orchestrator');
    expect(suspensionInWords(shown(undefined))).toBe('');
  });
});
