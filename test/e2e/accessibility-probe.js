// Runs inside the page (page.evaluate serializes it): the WCAG 2.2 facts every
// human-facing page must hold, read from the rendered DOM. Plain JavaScript
// because the project's TypeScript has no DOM library. Returns what is wrong.
export function accessibilityProblems() {
  const problems = [];
  const h1s = document.querySelectorAll('h1').length;
  if (h1s !== 1) problems.push(`${h1s} h1 elements`);
  if (document.querySelectorAll('main, [role=main]').length !== 1) problems.push('not exactly one main landmark');
  if (!document.documentElement.lang) problems.push('no lang on <html>');
  if (document.scripts.length) problems.push('a script element');
  // 1.3.1, 4.1.2: every control has a label; every button and link a name.
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    const named = (el.labels?.length ?? 0) > 0 || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
    if (!named) problems.push(`unlabelled ${el.tagName.toLowerCase()} ${el.name}`);
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!(el.textContent?.trim() || el.getAttribute('aria-label'))) problems.push(`${el.tagName.toLowerCase()} without a name`);
  }
  // 1.4.3: text contrast against the first opaque background behind it.
  const rgb = (c) => (c.match(/[\d.]+/g) ?? []).map(Number);
  const luminance = ([r, g, b]) =>
    [r, g, b].map((v) => (v / 255 <= 0.03928 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4)).reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const el of document.querySelectorAll('body *')) {
    const hasText = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    const style = getComputedStyle(el);
    if (!hasText || style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
    // The skip link waits off screen until focused.
    if (el.getBoundingClientRect().right < 0) continue;
    const [fg, bg] = [luminance(rgb(style.color)), luminance(background(el))];
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)} for “${el.textContent.trim().slice(0, 40)}”`);
  }
  return problems;
}
