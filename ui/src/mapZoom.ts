// Zoom and pan of the service map as a pure transform: a point p of the drawing shows at
// t + k * p in the view's coordinates. Fit is the identity (the view box fits the drawing).

export type Zoom = { k: number; x: number; y: number };
export const FIT: Zoom = { k: 1, x: 0, y: 0 };
export const K_MIN = 0.25;
export const K_MAX = 12;
export const STEP = 1.5; // one button press or wheel notch

/** Scaled by `factor` about the view point (cx, cy), which stays where it is. */
export function zoomAt(z: Zoom, factor: number, cx: number, cy: number): Zoom {
  const k = Math.min(K_MAX, Math.max(K_MIN, z.k * factor));
  const f = k / z.k;
  return { k, x: cx - (cx - z.x) * f, y: cy - (cy - z.y) * f };
}

export const panBy = (z: Zoom, dx: number, dy: number): Zoom => ({ k: z.k, x: z.x + dx, y: z.y + dy });

export const transform = (z: Zoom) => `translate(${z.x} ${z.y}) scale(${z.k})`;
