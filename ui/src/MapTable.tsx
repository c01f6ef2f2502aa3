// The service map as a table: one row per edge, sortable by any column (calls, errors
// and p95 are what people sort by). For graphs too big to read as a drawing.

import { useMemo, useState } from "preact/hooks";
import { type MapEdge, p95Text, rate, type SortKey, sortEdges } from "./mapGraph";

const COLUMNS: [SortKey, string, boolean][] = [
  // key, heading, numeric (sorts busiest/slowest first on the first click)
  ["source", "Source", false],
  ["target", "Destination", false],
  ["protocol", "Protocol", false],
  ["calls", "Calls", true],
  ["errors", "Errors", true],
  ["rate", "Rate", true],
  ["p95", "p95", true],
];

type Props = { edges: MapEdge[]; picked: string | null; onPick: (key: string) => void };

export function MapTable({ edges, picked, onPick }: Props) {
  const [key, setKey] = useState<SortKey>("calls");
  const [descending, setDescending] = useState(true);
  const rows = useMemo(() => sortEdges(edges, key, descending), [edges, key, descending]);
  const sortBy = (k: SortKey, numeric: boolean) => {
    if (k === key) setDescending(!descending);
    else {
      setKey(k);
      setDescending(numeric);
    }
  };
  return (
    <div class="map-table-box">
      <table class="map-table" data-testid="map-table">
        <thead>
          <tr>
            {COLUMNS.map(([k, label, numeric]) => (
              <th
                class={`${numeric ? "num" : ""}${k === key ? " sorted" : ""}`}
                data-testid={`map-sort-${k}`}
                aria-sort={k === key ? (descending ? "descending" : "ascending") : "none"}
                onClick={() => sortBy(k, numeric)}
              >
                {label}
                {k === key && <span class="sort-mark">{descending ? " v" : " ^"}</span>}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((e) => (
            <tr
              key={e.key}
              class={e.key === picked ? "picked" : ""}
              data-testid="map-row"
              data-source={e.source}
              data-target={e.target}
              data-protocol={e.protocol}
              onClick={() => onPick(e.key)}
            >
              <td>{e.source}</td>
              <td>{e.target}</td>
              <td>{e.protocol}</td>
              <td class="num" data-col="calls">{e.calls}</td>
              <td class="num" data-col="errors">{e.errors}</td>
              <td class="num" data-col="rate">{rate(e.perSecond)}</td>
              <td class="num" data-col="p95">{p95Text(e.p95)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
