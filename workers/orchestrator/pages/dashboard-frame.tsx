// What every page of the principal's dashboard shares: the nav, the notice
// after a form post, the spend bars, and the rules that make tables and bars
// read on a phone. Server-rendered; no script anywhere (the CSP allows none).
import type { Child } from 'hono/jsx';
import { formatDate, formatMoney } from '../../lib/pages/format';
import { Layout, type NavLink } from '../../lib/pages/layout';
import type { Charge } from '../../lib/schemas/charges';
import type { Money } from '../../lib/schemas/money';

export const DASHBOARD_NAV: NavLink[] = [
  { href: '/dashboard', label: 'Overview' },
  { href: '/dashboard/notifications', label: 'Notifications' },
  { href: '/dashboard/agents', label: 'Agents' },
  { href: '/dashboard/mandates', label: 'Mandates' },
  { href: '/dashboard/limits', label: 'Limits' },
  { href: '/dashboard/charges', label: 'Charges' },
  { href: '/dashboard/audit', label: 'Audit trail' },
  { href: '/dashboard/disputes', label: 'Disputes' },
];

// Bars are never colour alone: each carries its amount and percentage in text,
// and the fills past an alert threshold are striped as well as coloured.
const DASHBOARD_STYLES = `
main { max-width: 60rem; }
textarea, select { width: 100%; padding: .5rem .6rem; border: 1px solid #8c959f; border-radius: 6px; font: inherit; background: #fff; color: inherit; }
textarea { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9em; min-height: 5.5rem; }
.hint { color: var(--muted); font-size: .92rem; margin: .25rem 0 .75rem; }
.card > h2:first-child { margin-top: 0; }
.nowrap { white-space: nowrap; }
.wrap { overflow-wrap: anywhere; }
table.findings th:first-child { width: 40%; }
table.findings th:nth-child(2) { width: 7rem; }
.notice { border: 2px solid currentColor; border-radius: 6px; padding: .6rem .9rem; background: #fff; }
.bars { list-style: none; margin: 0; padding: 0; }
.bars li { margin: 0 0 1rem; }
.bar-head { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 0 1rem; }
.bar-value { font-variant-numeric: tabular-nums; }
.bar { height: 1rem; background: #eef1f4; border: 1px solid #6e7781; border-radius: 4px; overflow: hidden; margin-top: .25rem; }
.fill { height: 100%; background: var(--accent); }
.fill.warn { background: repeating-linear-gradient(135deg, #8a5a00 0 6px, #b87800 6px 12px); }
.fill.over { background: repeating-linear-gradient(135deg, var(--bad) 0 6px, #7d1a15 6px 12px); }
.badge.warn { border-color: #8a5a00; color: #6b4600; }
.badge.over { border-color: var(--bad); color: var(--bad); }
.feed { list-style: none; margin: 0; padding: 0; }
.feed li { border-bottom: 1px solid var(--line); padding: .6rem 0; }
.filters { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: 0 1rem; }
form.inline { margin: 0; }
.actions { align-items: center; }
td form.inline label { margin-top: 0; }
td form.inline select { width: auto; margin-right: .25rem; }
td form.inline + form.inline { margin-top: .5rem; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
details { margin-top: .75rem; }
.dispute { border-top: 1px solid var(--line); margin-top: 1rem; }
.dispute h3 { font-size: 1.05rem; margin: 1rem 0 .5rem; }
summary { cursor: pointer; font-weight: 600; }
@media (max-width: 40rem) {
  main { margin: 1rem auto; padding: 0 .5rem; }
  .card { padding: 1rem; }
  header { padding: .5rem 1rem; }
  header nav[aria-label="Account"] { margin-left: 0; }
  /* Tables become one card per row, each cell labelled with its column. */
  table.stack thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
  table.stack, table.stack tbody, table.stack tr, table.stack td { display: block; width: 100%; }
  table.stack tr { border-bottom: 2px solid var(--line); padding: .5rem 0; }
  table.stack td { border: 0; padding: .15rem 0; text-align: left; }
  .nowrap { white-space: normal; }
  table.findings th { width: auto; }
  table.stack td[data-label]::before { content: attr(data-label) ": "; font: 600 1rem/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--muted); }
}
`;

export type Notice = { kind: 'ok' | 'error'; text: string } | null;

export function DashboardFrame(props: { title: string; roleName: string; signedIn: { label: string; csrfToken: string }; current: string; notice?: Notice; children: Child }) {
  const { notice } = props;
  return (
    <Layout title={props.title} roleName={props.roleName} signedIn={props.signedIn} nav={DASHBOARD_NAV} current={props.current} styles={DASHBOARD_STYLES}>
      {notice ? (
        notice.kind === 'ok' ? (
          <p class="notice ok" role="status">
            {notice.text}
          </p>
        ) : (
          <p class="notice error" role="alert">
            {notice.text}
          </p>
        )
      ) : null}
      {props.children}
    </Layout>
  );
}

/** The session's CSRF token, which every dashboard form posts (PROTOCOL.md §2.0). */
export function Csrf(props: { token: string }) {
  return <input type="hidden" name="csrf_token" value={props.token} />;
}

/** Whole percent of `limit` used; a zero limit is full as soon as anything is spent. */
export function percentUsed(spent: Money, limit: Money): number {
  if (limit.amount <= 0) return spent.amount > 0 ? 100 : 0;
  return Math.floor((spent.amount * 100) / limit.amount);
}

/** The words that go with a percentage, at the thresholds budget alerts use (50, 80, 100 %). */
function level(percent: number): { fill: string; words: string | null } {
  if (percent >= 100) return { fill: 'over', words: 'limit reached' };
  if (percent >= 80) return { fill: 'warn', words: 'over 80 %' };
  if (percent >= 50) return { fill: '', words: 'over 50 %' };
  return { fill: '', words: null };
}

export type Bar = { label: Child; spent: Money; limit: Money; note?: string };

/** A chart of spend against limits: text first, the bar a decorative echo of it. */
export function SpendBars(props: { bars: Bar[]; label: string }) {
  return (
    <ul class="bars" aria-label={props.label}>
      {props.bars.map((bar) => {
        const percent = percentUsed(bar.spent, bar.limit);
        const { fill, words } = level(percent);
        return (
          <li>
            <div class="bar-head">
              <span>{bar.label}</span>
              <span class="bar-value">
                <strong>{formatMoney(bar.spent)}</strong> {bar.note ?? `of ${formatMoney(bar.limit)}`} ({percent} %)
                {words ? (
                  <>
                    {' '}
                    <span class={`badge ${fill}`}>{words}</span>
                  </>
                ) : null}
              </span>
            </div>
            <div class="bar" aria-hidden="true">
              <div class={`fill ${fill}`} style={`width:${Math.min(100, percent)}%`} />
            </div>
          </li>
        );
      })}
    </ul>
  );
}

/** "2026-11" as "November 2026". */
export function periodName(period: string): string {
  const [y, m] = period.split('-').map(Number) as [number, number];
  return new Date(Date.UTC(y, m - 1, 1)).toLocaleString('en-US', { month: 'long', year: 'numeric', timeZone: 'UTC' });
}

/** Names for ids: agents, mandates and providers as the human knows them. */
export type Names = { agents: Record<string, string>; mandates: Record<string, string>; providers: Record<string, string> };

export function AgentName(props: { id: string | null; names: Names }) {
  if (!props.id) return <span class="muted">an agent not yet registered</span>;
  const name = props.names.agents[props.id];
  return name ? (
    <>
      {name} <span class="muted mono">{props.id}</span>
    </>
  ) : (
    <span class="mono">{props.id}</span>
  );
}

/** A charge's first cells in a table of charges: when, what and by whom, how much (and how much came back). */
export function ChargeCells(props: { charge: Charge; names: Names }) {
  const { charge: ch, names } = props;
  return (
    <>
      <td data-label="When">{formatDate(ch.created)}</td>
      <td data-label="What">
        {ch.service} ({ch.plan}) at {names.providers[ch.provider ?? ''] ?? ch.provider}
        <div class="muted">
          by <AgentName id={ch.agent_id} names={names} />
        </div>
        <div class="muted mono">{ch.charge_id}</div>
      </td>
      <td data-label="Amount" class="num">
        {formatMoney({ amount: ch.amount, currency: ch.currency })}
        {ch.amount_refunded ? <div class="muted">{formatMoney({ amount: ch.amount_refunded, currency: ch.currency })} given back</div> : null}
      </td>
    </>
  );
}
