// Click-to-filter: a value seen in a call's detail becomes `field == value` (or `!=`)
// added to the user's KFL, as Kubeshark does.

/** A KFL literal: numbers as they are, text as a double-quoted string (JSON's escapes
 * are all KFL escapes too). */
export function literal(value: string | number): string {
  return typeof value === "number" ? String(value) : JSON.stringify(value);
}

export function clause(field: string, value: string | number, negate: boolean): string {
  return `${field} ${negate ? "!=" : "=="} ${literal(value)}`;
}

/** `text and clause`; an `or` at the top of the user's filter is kept whole with
 * parentheses, so the new clause narrows all of it. */
export function addClause(text: string, add: string): string {
  const user = text.trim();
  if (!user) return add;
  if (user.split("\n").includes(add) || user === add) return user;
  const wrapped = /\bor\b|\|\|/.test(user) ? `(${user})` : user;
  return `${wrapped} and ${add}`;
}

/** A header's selector: names are stored lower-cased. */
export const headerField = (part: "request" | "response", name: string) =>
  `${part}.headers[${JSON.stringify(name.toLowerCase())}]`;
