// The KFL filter bar. A filter the hub refuses shows its error in place: the line it is
// on, a caret under the character, and the message.

import type { Place } from "./query";

type Props = {
  text: string;
  error: Place | null;
  plainError: string | null;
  onInput: (text: string) => void;
  onApply: () => void;
};

export function KflBar({ text, error, plainError, onInput, onApply }: Props) {
  const lines = text.split("\n").length;
  return (
    <div class={`kfl${error || plainError ? " bad" : ""}`}>
      <label for="kfl">KFL</label>
      <textarea
        id="kfl"
        data-testid="kfl-input"
        spellcheck={false}
        rows={Math.min(Math.max(lines, 1), 6)}
        placeholder='e.g. http and response.status >= 500   ·   path.startsWith("/api") and elapsed_ms > 100'
        value={text}
        onInput={(e) => onInput((e.currentTarget as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey) {
            e.preventDefault();
            onApply();
          }
        }}
      />
      {error && <ErrorInPlace text={text} place={error} />}
      {!error && plainError && (
        <div class="kfl-error" data-testid="kfl-error" role="alert">
          {plainError}
        </div>
      )}
    </div>
  );
}

function ErrorInPlace({ text, place }: { text: string; place: Place }) {
  const line = text.split("\n")[place.line - 1] ?? "";
  return (
    <div class="kfl-error" data-testid="kfl-error" role="alert">
      <pre data-testid="kfl-error-line">
        {line}
        {"\n"}
        <span class="caret" data-testid="kfl-caret">
          {line.slice(0, place.column - 1).replace(/[^\t]/g, " ")}^
        </span>
      </pre>
      <span data-testid="kfl-error-message">
        {place.line}:{place.column}: {place.message}
      </span>
    </div>
  );
}
