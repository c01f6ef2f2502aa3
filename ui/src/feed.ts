// The calls one filter shows: stored history paged back with /api/calls?before=, and new
// calls from WS /api/live on top. Both lists only grow at their end, so tens of
// thousands of calls cost no copying: index 0 is the newest live call.

import { ApiError, type Call, type CallPage, getJson, type LiveMessage, openLive } from "./api";

export type LiveState =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "down"; why: string };

// Page sizes; ?page=N in the address sets both (1..1000), e.g. to see paging at work.
const pageParam = Number(new URLSearchParams(location.search).get("page"));
const PAGE = Number.isInteger(pageParam) && pageParam >= 1 ? Math.min(pageParam, 1000) : 0;
const FIRST_PAGE = PAGE || 200;
const MORE_PAGE = PAGE || 500;
const FLUSH_MS = 100; // live calls reach the list in batches, at most this late
const RETRY_MS = 5000;

export class Feed {
  private live: Call[] = []; // oldest first
  private past: Call[] = []; // newest first
  private ids = new Set<string>();
  private pending: Call[] = [];
  private flushTimer: number | undefined;
  private retryTimer: number | undefined;
  private socket: WebSocket | null = null;
  private abort = new AbortController();
  private stopped = false;
  next: string | null = null;
  loading = false;
  liveState: LiveState = { kind: "connecting" };
  dropped = 0;
  pageError: string | null = null;
  onChange: () => void = () => {};

  /** `paged` false: the filter has its own limit(n); show that one page only. */
  constructor(
    readonly q: string,
    private readonly paged: boolean,
  ) {}

  get size(): number {
    return this.live.length + this.past.length;
  }

  get liveCount(): number {
    return this.live.length;
  }

  get more(): boolean {
    return this.next !== null;
  }

  at(i: number): Call {
    const n = this.live.length;
    return i < n ? this.live[n - 1 - i] : this.past[i - n];
  }

  /** The first page, with the live tail opened alongside; rejects with the hub's
   * ApiError (a bad filter is a 400) and then leaves nothing running. */
  async start(): Promise<void> {
    this.connect();
    try {
      const page = await getJson<CallPage>(
        "calls",
        { q: this.q, limit: this.paged ? String(FIRST_PAGE) : undefined },
        this.abort.signal,
      );
      this.addPage(page);
    } catch (ex) {
      this.stop();
      throw ex;
    }
  }

  /** The next older page, if there is one and none is on its way. */
  async loadMore(): Promise<void> {
    if (!this.next || this.loading || this.stopped) return;
    this.loading = true;
    this.onChange();
    try {
      const page = await getJson<CallPage>(
        "calls",
        { q: this.q, limit: String(MORE_PAGE), before: this.next },
        this.abort.signal,
      );
      this.pageError = null;
      this.addPage(page);
    } catch (ex) {
      if (this.stopped) return;
      this.pageError = ex instanceof ApiError ? ex.message : String(ex);
    } finally {
      this.loading = false;
      this.onChange();
    }
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    clearTimeout(this.flushTimer);
    clearTimeout(this.retryTimer);
    this.socket?.close(1000);
    this.socket = null;
  }

  private addPage(page: CallPage): void {
    for (const call of page.calls) {
      if (this.ids.has(call.id)) continue;
      this.ids.add(call.id);
      this.past.push(call);
    }
    this.next = this.paged ? page.next : null;
    this.onChange();
  }

  private connect(): void {
    if (this.stopped) return;
    this.liveState = { kind: "connecting" };
    const ws = openLive(this.q);
    this.socket = ws;
    let why = "";
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data as string) as LiveMessage;
      if (msg.type === "ready") {
        this.liveState = { kind: "live" };
        this.onChange();
      } else if (msg.type === "call") {
        this.pending.push(msg.call);
        if (this.flushTimer === undefined)
          this.flushTimer = window.setTimeout(() => this.flush(), FLUSH_MS);
      } else if (msg.type === "dropped") {
        this.dropped += msg.count;
      } else if (msg.type === "error") {
        why = msg.error;
      }
    };
    ws.onclose = (ev) => {
      if (this.stopped || ws !== this.socket) return;
      this.socket = null;
      this.liveState = { kind: "down", why: why || `connection closed (${ev.code})` };
      this.onChange();
      if (ev.code !== 4400) this.retryTimer = window.setTimeout(() => this.connect(), RETRY_MS);
    };
  }

  private flush(): void {
    this.flushTimer = undefined;
    for (const call of this.pending) {
      if (this.ids.has(call.id)) continue;
      this.ids.add(call.id);
      this.live.push(call);
    }
    this.pending = [];
    this.onChange();
  }
}
