// The frame of every server-rendered page: readable without client
// JavaScript, labelled forms, visible focus, contrast that passes WCAG AA.
import { raw } from 'hono/html';
import type { Child } from 'hono/jsx';

const styles = `
:root { color-scheme: light; --ink: #1b1f24; --muted: #4a5360; --line: #d0d7de; --accent: #0b57d0; --bad: #b3261e; --ok: #146c2e; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f6f8fa; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: .75rem 1.5rem; display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; }
header strong { font-size: 1.05rem; }
header nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; }
header nav a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 3px; }
.skip-link { position: absolute; left: -9999px; top: .5rem; background: #fff; padding: .5rem 1rem; border: 2px solid var(--accent); border-radius: 6px; z-index: 1; }
.skip-link:focus { left: 1rem; }
header nav[aria-label="Account"] { margin-left: auto; }
header nav form { display: flex; margin: 0; }
main { max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1.25rem 1.5rem; margin-bottom: 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.25rem 0 .5rem; }
a { color: var(--accent); }
label { display: block; font-weight: 600; margin: .75rem 0 .25rem; }
input[type=text], input[type=email], input[type=password], input[type=number] { width: 100%; padding: .5rem .6rem; border: 1px solid #8c959f; border-radius: 6px; font: inherit; }
button { font: inherit; padding: .55rem 1.1rem; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--bad); border-color: var(--bad); }
button:focus-visible, a:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, summary:focus-visible { outline: 3px solid #f0b400; outline-offset: 2px; }
.muted { color: var(--muted); }
.error { color: var(--bad); font-weight: 600; }
.ok { color: var(--ok); font-weight: 600; }
.actions { display: flex; gap: .75rem; margin-top: 1.25rem; flex-wrap: wrap; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 0; }
dt { font-weight: 600; color: var(--muted); }
dd { margin: 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .92em; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 999px; border: 1px solid var(--line); font-size: .85rem; }
`;

export type NavLink = { href: string; label: string };

/** `current` marks the nav link of this page; `styles` adds a page's own rules after the shared ones. */
export function Layout(props: { title: string; roleName: string; signedIn?: { label: string; csrfToken: string } | null; nav?: NavLink[]; current?: string; styles?: string; children: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · ${props.roleName}`}</title>
        {/* The CSS is this module's and the page's own constants, never user input: escaping its quotes would break attribute selectors. */}
        <style>{raw(styles)}</style>
        {props.styles ? <style>{raw(props.styles)}</style> : null}
      </head>
      <body>
        <a class="skip-link" href="#main">
          Skip to main content
        </a>
        <header>
          <strong>{props.roleName}</strong>
          {props.signedIn && props.nav?.length ? (
            <nav aria-label="Pages">
              {props.nav.map((link) => (
                <a href={link.href} aria-current={link.href === props.current ? 'page' : undefined}>
                  {link.label}
                </a>
              ))}
            </nav>
          ) : null}
          {props.signedIn ? (
            <nav aria-label="Account">
              <span class="muted">{props.signedIn.label}</span>
              <form method="post" action="/sign-out">
                <input type="hidden" name="csrf_token" value={props.signedIn.csrfToken} />
                <button type="submit" class="secondary">Sign out</button>
              </form>
            </nav>
          ) : null}
        </header>
        <main id="main">{props.children}</main>
      </body>
    </html>
  );
}

/** Every page: no framing (clickjacking on approve, link and raise-limit pages), no script, forms only to this origin. */
export const PAGE_SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/** A table's column headings (scoped for screen readers). */
export function ColumnHeads(props: { names: string[]; numeric?: string[] }) {
  return (
    <thead>
      <tr>
        {props.names.map((name) => (
          <th scope="col" class={props.numeric?.includes(name) ? 'num' : undefined}>
            {name}
          </th>
        ))}
      </tr>
    </thead>
  );
}
