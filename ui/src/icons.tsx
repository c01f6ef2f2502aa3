// Symbols drawn as inline SVG: a plain Debian machine has no emoji or symbol font, and a
// character it lacks renders as an empty box. Every icon is `currentColor`, 1em high.

import type { ComponentChildren } from "preact";

type Props = { label?: string; class?: string };

function Svg({ label, class: cls, children }: Props & { children: ComponentChildren }) {
  return (
    <svg
      class={`icon${cls ? ` ${cls}` : ""}`}
      viewBox="0 0 16 16"
      width="1em"
      height="1em"
      role={label ? "img" : undefined}
      aria-label={label}
      aria-hidden={label ? undefined : "true"}
      data-icon={cls ?? "icon"}
    >
      {label && <title>{label}</title>}
      {children}
    </svg>
  );
}

export const Lock = ({ label = "TLS" }: Props) => (
  <Svg label={label} class="lock">
    <path d="M5 7V5a3 3 0 0 1 6 0v2" fill="none" stroke="currentColor" stroke-width="1.6" />
    <rect x="3" y="7" width="10" height="8" rx="1.5" fill="currentColor" />
  </Svg>
);

export const Close = ({ label = "close" }: Props) => (
  <Svg label={label} class="x">
    <path d="M4 4l8 8M12 4l-8 8" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" />
  </Svg>
);

export const Arrow = () => (
  <Svg class="arrow">
    <path d="M2 8h11M9 4l4 4-4 4" fill="none" stroke="currentColor" stroke-width="1.6" />
  </Svg>
);

export const Dot = ({ filled }: { filled: boolean }) => (
  <Svg class={filled ? "dot" : "ring"}>
    <circle cx="8" cy="8" r="4.5" fill={filled ? "currentColor" : "none"} stroke="currentColor" stroke-width="1.6" />
  </Svg>
);
