/**
 * Upload throughput measured from real progress events (XHR `upload.onprogress`), never from a
 * setting. Time only counts while at least one PUT is on the link, so pauses between PUTs (waiting
 * for a viewer, for the server) do not dilute the estimate.
 */
export interface MeterMark {
  bytes: number;
  busyMs: number;
}

interface Sample {
  busyMs: number;
  bytes: number;
}

export class LinkMeter {
  private bytes = 0;
  private busyMs = 0;
  private active = 0;
  private lastTick = 0;
  private readonly samples: Sample[] = [];

  constructor(
    /** the estimate covers this much busy time */
    private readonly windowMs = 3000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  private tick(): void {
    const t = this.now();
    if (this.active > 0) this.busyMs += Math.max(0, t - this.lastTick);
    this.lastTick = t;
  }

  /** a PUT went on the link */
  begin(): void {
    this.tick();
    this.active++;
  }

  /** a PUT left the link (done, failed or aborted) */
  end(): void {
    this.tick();
    this.active = Math.max(0, this.active - 1);
  }

  /** `delta` more bytes were handed to the network */
  add(delta: number): void {
    if (delta <= 0) return;
    this.tick();
    this.bytes += delta;
    this.samples.push({ busyMs: this.busyMs, bytes: this.bytes });
    const keepFrom = this.busyMs - this.windowMs * 2;
    while (this.samples.length > 2 && this.samples[1]!.busyMs < keepFrom) this.samples.shift();
  }

  get totalBytes(): number {
    return this.bytes;
  }

  /** bytes/s over the last `windowMs` of busy time; null until there is enough to tell */
  rate(): number | null {
    this.tick();
    const from = this.busyMs - this.windowMs;
    let base: Sample | undefined;
    for (const s of this.samples) {
      if (s.busyMs <= from) base = s;
      else break;
    }
    base ??= this.samples[0];
    if (!base) return null;
    const ms = this.busyMs - base.busyMs;
    if (ms < 200) return null;
    return ((this.bytes - base.bytes) * 1000) / ms;
  }

  mark(): MeterMark {
    this.tick();
    return { bytes: this.bytes, busyMs: this.busyMs };
  }

  /** bytes/s since `m` (busy time only); null if too little time passed */
  rateSince(m: MeterMark): number | null {
    this.tick();
    const ms = this.busyMs - m.busyMs;
    return ms < 200 ? null : ((this.bytes - m.bytes) * 1000) / ms;
  }
}
