// The check an agent's Worker module passes before any money moves
// (DESIGN.md "Deployed Workers"): small enough, an ES module that parses, a
// default export with a fetch handler, no import the runner cannot resolve.
// It is parsed with acorn, never evaluated (`new Function` is not available
// in Workers, and running the agent's code here would be the wrong place).
import { getLineInfo, parse, type ClassDeclaration, type ClassExpression, type Node, type ObjectExpression, type Program } from 'acorn';
import { sha256Hex } from '../../lib/audit';
import { ProvisionRefused } from './registry';

/** 256 KiB of UTF-8: the catalog's `maxLength` counts characters, the runner loads bytes. */
export const MODULE_MAX_BYTES = 256 * 1024;

/** The runner loads the module on its own: only the runtime's built-in modules can resolve. */
const BUILTIN_MODULE = /^(?:cloudflare|node):/;

/** How far `export default app` is followed through `const app = other` before giving up. */
const MAX_ALIAS_DEPTH = 8;

const EXPECTED = 'it must be `export default { fetch(request, env, ctx) { … } }`';

export type CheckedModule = { bytes: number; sha256: string };

type AnyNode = Node & Record<string, any>;

/** "The module <reason> at <line>:<column>; <hint>." */
class ModuleRefused extends ProvisionRefused {
  constructor(reason: string, source: string, at?: number, hint?: string) {
    super('invalid_parameters', `The module ${reason}${at === undefined ? '' : ` at ${lineColumn(source, at)}`}${hint ? `; ${hint}` : ''}.`, 422);
  }
}

/** Line and column of a source offset, both 1-based as editors show them (acorn's column is 0-based). */
function lineColumn(source: string, offset: number): string {
  const { line, column } = getLineInfo(source, offset);
  return `${line}:${column + 1}`;
}

/** What a resource shows of its module: its size and digest. */
export function measureModule(source: string): CheckedModule {
  return { bytes: new TextEncoder().encode(source).byteLength, sha256: sha256Hex(source) };
}

export function checkWorkerModule(source: string): CheckedModule {
  const measured = measureModule(source);
  const { bytes } = measured;
  if (bytes > MODULE_MAX_BYTES) throw new ModuleRefused(`is ${bytes} bytes; the limit is ${MODULE_MAX_BYTES} (256 KiB)`, source);

  let program: Program;
  try {
    program = parse(source, { ecmaVersion: 'latest', sourceType: 'module' });
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    const at = (error as SyntaxError & { pos?: number }).pos;
    // acorn appends "(line:0-based column)"; the position is given once, 1-based.
    throw new ModuleRefused(`does not parse as an ES module: ${error.message.replace(/ \(\d+:\d+\)$/, '')}`, source, at);
  }

  checkImports(program, source);
  checkDefaultExport(program, source);
  return measured;
}

/** Every node of the tree, without recursion (acorn refuses input nested past its stack, but not far below it). */
function* nodesOf(root: Node): Generator<AnyNode> {
  const stack: unknown[] = [root];
  while (stack.length) {
    const item = stack.pop();
    if (Array.isArray(item)) for (const element of item) stack.push(element); // no spread: an array literal may hold 100k elements
    else if (item && typeof item === 'object' && typeof (item as Node).type === 'string') {
      yield item as AnyNode;
      for (const value of Object.values(item)) if (value && typeof value === 'object') stack.push(value);
    }
  }
}

function staticString(node: AnyNode): string | null {
  if (node.type === 'Literal' && typeof node.value === 'string') return node.value;
  if (node.type === 'TemplateLiteral' && node.expressions.length === 0) return node.quasis[0].value.cooked;
  return null;
}

function checkImports(program: Program, source: string) {
  const offending: { at: number; reason: string; hint: string }[] = [];
  for (const node of nodesOf(program)) {
    const from = node.type === 'ImportDeclaration' || node.type === 'ExportAllDeclaration' || (node.type === 'ExportNamedDeclaration' && node.source) ? node.source : node.type === 'ImportExpression' ? node.source : null;
    if (!from) continue;
    const specifier = staticString(from);
    if (specifier === null) offending.push({ at: node.start, reason: 'imports a computed specifier', hint: 'only a string naming a cloudflare:* or node:* module can be checked' });
    else if (!BUILTIN_MODULE.test(specifier)) offending.push({ at: node.start, reason: `imports "${specifier}"`, hint: 'it cannot resolve: a deployed Worker is one module, and only cloudflare:* and node:* modules are built in' });
  }
  const first = offending.sort((a, b) => a.at - b.at)[0];
  if (first) throw new ModuleRefused(first.reason, source, first.at, first.hint);
}

/** What a top-level name is bound to: the declaration's value, or `unknown` when it comes from elsewhere. */
function bindingOf(program: Program, name: string): AnyNode | 'unknown' | null {
  for (const statement of program.body as AnyNode[]) {
    const declaration: AnyNode = statement.type === 'ExportNamedDeclaration' && statement.declaration ? statement.declaration : statement;
    if ((declaration.type === 'FunctionDeclaration' || declaration.type === 'ClassDeclaration') && declaration.id?.name === name) return declaration;
    if (declaration.type === 'VariableDeclaration') {
      for (const declarator of declaration.declarations) {
        if (declarator.id.type === 'Identifier' && declarator.id.name === name) return declarator.init ?? 'unknown'; // `let app; app = …` is assigned later
        if (declarator.id.type !== 'Identifier' && [...nodesOf(declarator.id)].some((n) => n.type === 'Identifier' && n.name === name)) return 'unknown';
      }
    }
    if (declaration.type === 'ImportDeclaration' && declaration.specifiers.some((s: AnyNode) => s.local.name === name)) return 'unknown';
  }
  return null;
}

function checkDefaultExport(program: Program, source: string) {
  let exported: { at: number; value: AnyNode } | null = null;
  for (const statement of program.body as AnyNode[]) {
    if (statement.type === 'ExportDefaultDeclaration') exported = { at: statement.start, value: statement.declaration };
    if (statement.type === 'ExportNamedDeclaration') {
      const specifier = statement.specifiers.find((s: AnyNode) => (s.exported.name ?? s.exported.value) === 'default');
      if (specifier && statement.source) throw new ModuleRefused(`re-exports its default export from "${staticString(statement.source)}"`, source, statement.start, EXPECTED);
      if (specifier) exported = { at: statement.start, value: specifier.local };
    }
  }
  if (!exported) throw new ModuleRefused('has no default export', source, undefined, EXPECTED);
  const problem = fetchHandlerProblem(program, exported.value, 0);
  if (problem) throw new ModuleRefused(problem, source, exported.at, EXPECTED);
}

/** Why this default export has no fetch handler, or null when it has one (or it cannot be told without running it). */
function fetchHandlerProblem(program: Program, value: AnyNode, depth: number): string | null {
  if (depth > MAX_ALIAS_DEPTH) return null;
  switch (value.type) {
    case 'ObjectExpression':
      return objectProblem(program, value as ObjectExpression & AnyNode);
    case 'ClassDeclaration':
    case 'ClassExpression':
      return classProblem(program, value as (ClassDeclaration | ClassExpression) & AnyNode, depth);
    case 'FunctionDeclaration':
    case 'FunctionExpression':
    case 'ArrowFunctionExpression':
      return 'exports a function as its default export, not an object with a fetch method';
    case 'Literal':
    case 'TemplateLiteral':
    case 'ArrayExpression':
      return 'exports a value with no fetch method as its default export';
    case 'Identifier': {
      const bound = bindingOf(program, value.name);
      if (bound === null) return `exports ${value.name} as its default export, which the module does not define`;
      return bound === 'unknown' ? null : fetchHandlerProblem(program, bound, depth + 1);
    }
    default:
      return null; // a call, a `new`, a member: only running it would tell
  }
}

function objectProblem(program: Program, object: AnyNode): string | null {
  const fetch = object.properties.find((p: AnyNode) => p.type === 'Property' && (p.computed ? staticString(p.key) : (p.key.name ?? p.key.value)) === 'fetch');
  if (!fetch) return object.properties.some((p: AnyNode) => p.type === 'SpreadElement') ? null : 'exports an object without a fetch method';
  if (fetch.kind !== 'init') return 'exports an object whose fetch is an accessor, not a method';
  const handler: AnyNode = fetch.value;
  if (handler.type === 'FunctionExpression' || handler.type === 'ArrowFunctionExpression') return null;
  if (handler.type === 'Identifier') {
    const bound = bindingOf(program, handler.name);
    if (bound === null) return `names ${handler.name} as fetch, which the module does not define`;
    if (bound === 'unknown' || ['FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression'].includes(bound.type)) return null;
    if (['ObjectExpression', 'ClassDeclaration', 'ClassExpression', 'Literal', 'TemplateLiteral', 'ArrayExpression'].includes(bound.type)) return 'exports an object whose fetch is not a function';
    return null;
  }
  if (['ObjectExpression', 'ClassExpression', 'Literal', 'TemplateLiteral', 'ArrayExpression'].includes(handler.type)) return 'exports an object whose fetch is not a function';
  return null;
}

function classProblem(program: Program, cls: AnyNode, depth: number): string | null {
  if (depth > MAX_ALIAS_DEPTH) return null;
  const fetch = cls.body.body.find((m: AnyNode) => (m.type === 'MethodDefinition' || m.type === 'PropertyDefinition') && !m.static && !m.computed && m.key.name === 'fetch');
  if (fetch) return null;
  // Inherited from a class of this module: look there. From a built-in (WorkerEntrypoint), there is none.
  if (cls.superClass?.type === 'Identifier') {
    const parent = bindingOf(program, cls.superClass.name);
    if (parent !== null && parent !== 'unknown' && (parent.type === 'ClassDeclaration' || parent.type === 'ClassExpression')) return classProblem(program, parent, depth + 1);
  }
  return 'exports a class without a fetch method';
}
