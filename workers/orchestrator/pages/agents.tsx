// The principal's agents (PROTOCOL.md §2.1): each key as a fingerprint to
// compare, a revoke button, and a form to register a key the agent proves it
// holds with a DPoP proof, exactly as POST /v1/agents wants it.
import { fingerprint, formatDate } from '../../lib/pages/format';
import { ColumnHeads } from '../../lib/pages/layout';
import type { AgentWire } from '../agents';
import { Csrf } from './dashboard-frame';

export type AgentForm = { name: string; public_jwk: string; proof: string };

export function AgentsPage(props: { agents: AgentWire[]; csrf: string; registerUrl: string; form?: AgentForm }) {
  const form = props.form ?? { name: '', public_jwk: '', proof: '' };
  const active = props.agents.filter((a) => a.status === 'active').length;
  return (
    <>
      <div class="card">
        <h1>Agents</h1>
        <p class="hint">
          {active === 0 ? 'No agent may act for you' : active === 1 ? 'One agent may act for you' : `${active} agents may act for you`}. Revoking an agent ends its mandates at once, and every provider is told.
        </p>
        {props.agents.length === 0 ? <p class="muted">No agent yet. An agent appears here once you register its key or approve its first request.</p> : null}
        {props.agents.length ? (
          <table class="stack">
            <ColumnHeads names={['Name', 'Key fingerprint', 'Status', 'Since', 'Action']} />
            <tbody>
              {props.agents.map((a) => (
                <tr>
                  <td data-label="Name">
                    {a.name}
                    {a.registered_via === 'first_contact' ? <div class="muted">named by itself, approved by you</div> : null}
                    <div class="muted mono">{a.agent_id}</div>
                  </td>
                  <td data-label="Key fingerprint" class="mono nowrap">
                    {fingerprint(a.key_thumbprint)}
                  </td>
                  <td data-label="Status">
                    <span class={a.status === 'active' ? 'badge' : 'badge over'}>{a.status}</span>
                  </td>
                  <td data-label="Since">{a.status === 'revoked' && a.revoked_at ? `revoked ${formatDate(a.revoked_at)}` : formatDate(a.created)}</td>
                  <td data-label="Action">
                    {a.status === 'active' ? (
                      <form class="inline" method="post" action={`/dashboard/agents/${a.agent_id}/revoke`}>
                        <Csrf token={props.csrf} />
                        <button type="submit" class="secondary" aria-label={`Revoke ${a.name}`}>
                          Revoke
                        </button>
                      </form>
                    ) : (
                      <span class="muted">none</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </div>
      <div class="card">
        <h2>Register an agent</h2>
        <p>
          Paste the agent’s public key, and a proof that the agent holds its private key: a DPoP proof (RFC 9449) the agent signed for <code>POST {props.registerUrl}</code> in the last
          minute. Nobody can register a key they do not hold.
        </p>
        <form method="post" action="/dashboard/agents">
          <Csrf token={props.csrf} />
          <label for="agent-name">Name</label>
          <input id="agent-name" name="name" type="text" required maxlength={100} value={form.name} autocomplete="off" />
          <label for="agent-jwk">Public key (JWK)</label>
          <textarea id="agent-jwk" name="public_jwk" required aria-describedby="agent-jwk-hint" spellcheck={false}>
            {form.public_jwk}
          </textarea>
          <p id="agent-jwk-hint" class="hint">
            An Ed25519 key, like {'{"kty":"OKP","crv":"Ed25519","x":"…"}'}. Never paste a private key.
          </p>
          <label for="agent-proof">Proof of possession (DPoP proof)</label>
          <textarea id="agent-proof" name="proof" required spellcheck={false}>
            {form.proof}
          </textarea>
          <div class="actions">
            <button type="submit">Register the agent</button>
          </div>
        </form>
      </div>
    </>
  );
}
