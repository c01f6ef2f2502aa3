// Rule verdicts as they come in a call's JSON: `verdicts` (a list of per-rule verdicts,
// or a map rule → verdict) and/or `verdict` (the whole call's: "pass"/"fail", a boolean
// or an object with `passed`).

export type RuleVerdict = { rule: string; passed: boolean; text: string };
export type Verdicts = { state: "pass" | "fail" | null; rules: RuleVerdict[] };

function passedOf(v: unknown): boolean | null {
  if (typeof v === "boolean") return v;
  if (typeof v === "string") {
    const s = v.toLowerCase();
    if (s.startsWith("pass") || s === "ok" || s === "green") return true;
    if (s.startsWith("fail") || s === "red" || s === "violation") return false;
    return null;
  }
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    for (const key of ["passed", "pass", "ok", "result", "status", "verdict", "text"]) {
      if (key in o) {
        const p = passedOf(o[key]);
        if (p !== null) return p;
      }
    }
  }
  return null;
}

function textOf(v: unknown, passed: boolean): string {
  if (typeof v === "string") return v;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (typeof o.text === "string") return o.text;
    if (typeof o.message === "string") return o.message;
    if (!passed && o.observed !== undefined)
      return `fail: ${o.observed} ${o.op ?? ""} ${o.limit ?? ""}`.trim();
  }
  return passed ? "pass" : "fail";
}

function ruleOf(v: unknown, fallback: string): string {
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    for (const key of ["rule", "name", "id"]) if (typeof o[key] === "string") return o[key] as string;
  }
  return fallback;
}

export function verdictsOf(call: { verdicts?: unknown; verdict?: unknown }): Verdicts {
  const rules: RuleVerdict[] = [];
  const add = (v: unknown, name: string) => {
    const passed = passedOf(v);
    if (passed !== null) rules.push({ rule: ruleOf(v, name), passed, text: textOf(v, passed) });
  };
  const vs = call.verdicts;
  if (Array.isArray(vs)) vs.forEach((v, i) => add(v, `rule ${i + 1}`));
  else if (vs && typeof vs === "object")
    for (const [name, v] of Object.entries(vs as Record<string, unknown>)) add(v, name);
  let state: Verdicts["state"] = null;
  const whole = call.verdict === undefined || call.verdict === null ? null : passedOf(call.verdict);
  if (whole !== null) state = whole ? "pass" : "fail";
  else if (rules.length) state = rules.every((r) => r.passed) ? "pass" : "fail";
  return { state, rules };
}
