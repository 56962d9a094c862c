// Charges: everything agents were charged, newest first, with the state of each
// (authorized, captured, voided, refunded) and a dispute form on the captured
// ones not yet disputed.
import { ColumnHeads } from '../../lib/pages/layout';
import type { Charge } from '../../lib/schemas/charges';
import { ChargeCells, type Names } from './dashboard-frame';
import { DisputeForm } from './disputes';

export function ChargesPage(props: { charges: Charge[]; total: number; disputed: Set<string>; names: Names; csrf: string }) {
  const { names } = props;
  return (
    <div class="card">
      <h1>Charges</h1>
      <p class="hint">
        Each charge an agent made at a provider, under one of your mandates. An authorized charge is held against your limits until the provider captures it (the resource
        exists) or voids it (nothing was made).
      </p>
      {props.charges.length === 0 ? <p class="muted">No charges yet.</p> : null}
      {props.total > props.charges.length ? <p class="muted">The latest {props.charges.length} of {props.total}.</p> : null}
      {props.charges.length ? (
        <table class="stack">
          <ColumnHeads names={['When', 'What', 'Amount', 'Status', 'Dispute']} numeric={['Amount']} />
          <tbody>
            {props.charges.map((ch) => (
              <tr>
                <ChargeCells charge={ch} names={names} />
                <td data-label="Status">
                  <span class="badge">{ch.status}</span>
                </td>
                <td data-label="Dispute">
                  {props.disputed.has(ch.charge_id) ? (
                    <a href="/dashboard/disputes">Disputed</a>
                  ) : ch.status === 'captured' ? (
                    <DisputeForm charge_id={ch.charge_id} csrf={props.csrf} />
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}
