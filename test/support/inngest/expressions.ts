/**
 * Expression evaluation for the harness: trigger `if`, cancelOn `if` / `match`, waitForEvent `if`, and
 * the `key` of concurrency and singleton.
 */

export const nameMatches = (pattern: string, name: string): boolean =>
  pattern === name || (pattern.endsWith("*") && name.startsWith(pattern.slice(0, -1)));

/*
 * A CEL subset: paths under `event` and `async` (top-level fields such as `event.id` and `event.ts`
 * included), string/number/bool/null literals, + (numbers or strings), == != < <= > >=, !, &&, || and
 * parentheses. A missing field makes a comparison false, as a CEL evaluation error does. Anything else
 * throws, so a test never silently passes on an expression the harness does not understand.
 */
type Token = { kind: "op" | "str" | "num" | "path"; value: string };
/** What `evaluateValue` returns for a path that is not there (or an operation on one). */
export const MISSING: unique symbol = Symbol("missing");

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  const re =
    /\s*(?:(==|!=|<=|>=|&&|\|\||[<>!()+])|'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(-?\d+(?:\.\d+)?)|([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*))/y;
  let pos = 0;
  while (pos < expr.length) {
    if (/^\s*$/.test(expr.slice(pos))) break;
    re.lastIndex = pos;
    const m = re.exec(expr);
    if (!m) throw new Error(`harness: cannot parse expression ${JSON.stringify(expr)} at ${pos}`);
    pos = re.lastIndex;
    if (m[1] !== undefined) tokens.push({ kind: "op", value: m[1] });
    else if (m[2] !== undefined) tokens.push({ kind: "str", value: m[2].replace(/\\(.)/g, "$1") });
    else if (m[3] !== undefined) tokens.push({ kind: "str", value: m[3].replace(/\\(.)/g, "$1") });
    else if (m[4] !== undefined) tokens.push({ kind: "num", value: m[4] });
    else if (m[5] !== undefined) tokens.push({ kind: "path", value: m[5] });
  }
  return tokens;
}

/** A boolean expression (`if`): true only when it evaluates to `true`. */
export function evaluate(expr: string, scope: Record<string, unknown>): boolean {
  return truthy(evaluateValue(expr, scope));
}

/**
 * The value of an expression such as a concurrency key (`event.data.target`, `"global"`,
 * `event.data.a + "-" + event.data.b`); `MISSING` when it reads a field that is not there.
 */
export function evaluateValue(expr: string, scope: Record<string, unknown>): unknown {
  const tokens = tokenize(expr);
  let i = 0;
  const peek = () => tokens[i];
  const take = (value: string) => {
    if (peek()?.kind === "op" && peek()?.value === value) {
      i++;
      return true;
    }
    return false;
  };
  const fail = (): never => {
    throw new Error(`harness: unsupported expression ${JSON.stringify(expr)}`);
  };

  const primary = (): unknown => {
    const t = tokens[i++] ?? fail();
    if (t.kind === "op" && t.value === "(") {
      const v = or();
      if (!take(")")) fail();
      return v;
    }
    if (t.kind === "op" && t.value === "!") return !truthy(primary());
    if (t.kind === "str") return t.value;
    if (t.kind === "num") return Number(t.value);
    if (t.kind === "path") {
      if (t.value === "true") return true;
      if (t.value === "false") return false;
      if (t.value === "null") return null;
      const [root, ...rest] = t.value.split(".");
      if (root !== "event" && root !== "async") fail();
      let v: unknown = scope[root as string];
      for (const key of rest) {
        if (v === null || typeof v !== "object" || !(key in v)) return MISSING;
        v = (v as Record<string, unknown>)[key];
      }
      return v === undefined ? MISSING : v;
    }
    return fail();
  };
  const sum = (): unknown => {
    let v = primary();
    while (take("+")) {
      const right = primary();
      if (v === MISSING || right === MISSING) v = MISSING;
      else if (typeof v === "number" && typeof right === "number") v = v + right;
      else if (typeof v === "string" && typeof right === "string") v = v + right;
      else fail();
    }
    return v;
  };
  const comparison = (): unknown => {
    const left = sum();
    const t = peek();
    if (t?.kind !== "op" || !["==", "!=", "<", "<=", ">", ">="].includes(t.value)) return left;
    i++;
    const right = sum();
    if (left === MISSING || right === MISSING) return false;
    const eq = JSON.stringify(left) === JSON.stringify(right);
    switch (t.value) {
      case "==":
        return eq;
      case "!=":
        return !eq;
      default: {
        if (typeof left !== typeof right || (typeof left !== "number" && typeof left !== "string"))
          return false;
        const l = left as number | string;
        const r = right as number | string;
        return t.value === "<" ? l < r : t.value === "<=" ? l <= r : t.value === ">" ? l > r : l >= r;
      }
    }
  };
  // A lone operand keeps its value (a key expression); && and || make booleans.
  const and = (): unknown => {
    const first = comparison();
    if (!take("&&")) return first;
    let v = truthy(first);
    do v = truthy(comparison()) && v;
    while (take("&&"));
    return v;
  };
  const or = (): unknown => {
    const first = and();
    if (!take("||")) return first;
    let v = truthy(first);
    do v = truthy(and()) || v;
    while (take("||"));
    return v;
  };
  const result = or();
  if (i !== tokens.length) fail();
  return result;
}

const truthy = (v: unknown): boolean => v !== MISSING && v === true;
