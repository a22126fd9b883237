/**
 * The uploader's link in the browser benchmarks (issue 7): shaped below the application, never by
 * the code under test (no `?bw=` Pacer).
 *
 * - `netns` (scripts/bench.sh): the uploader's Chromium runs inside the namespace of
 *   scripts/shaped-link.sh, whose uplink is a kernel token bucket (tbf, bounded queue); the rate is
 *   changed with `shaped-link.sh rate`. netem is not in this kernel, so the link's round trip is
 *   added in the browser: CDP `Network.emulateNetworkConditions` with `latency` only (Chromium adds
 *   it to every request before the response starts) and no throughput limit.
 * - `cdp` (the cheaper mode, no root): one Chromium on the host; the uploader page's uplink is
 *   throttled by Chromium's network layer (CDP upload throughput + latency).
 *
 * Viewers always run on the host, unshaped (a viewer on a fast link): the figures are about the
 * uploader's uplink, and a viewer's requests must not queue behind the uploader's bytes in the
 * modem.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BrowserContext, CDPSession, Page } from 'playwright-core';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHAPED_LINK = join(root, 'scripts', 'shaped-link.sh');
export const NETNS_CHROMIUM = join(root, 'scripts', 'shaped-link-chromium.sh');

export type LinkMode = 'netns' | 'cdp';
export const LINK_MODE: LinkMode = process.env.CHUNKSTREAM_LINK === 'netns' ? 'netns' : 'cdp';
/** the tbf queue bound (ms of traffic at the link rate) */
export const QUEUE_MS = Number(process.env.CHUNKSTREAM_LINK_QUEUE_MS ?? 50);

export interface Link {
  /** nominal uplink rate, Mbit/s (tbf rate on the wire, or CDP throughput) */
  mbit: number;
  /** round trip added to every request, ms */
  rttMs: number;
}

export const linkLabel = (l: Link): string => `${l.mbit} Mbit/s / ${l.rttMs} ms`;
export const linkId = (l: Link): string => String(l.mbit);

/** Sets the kernel shaper to `l` (netns mode); CDP mode shapes per page in `shapePage`. */
export async function setLink(l: Link): Promise<void> {
  if (LINK_MODE !== 'netns') return;
  await waitLinkIdle();
  await run('bash', [SHAPED_LINK, 'rate', String(l.mbit), String(QUEUE_MS)], { timeout: 30_000 });
}

/**
 * The link's measured rate: one raw PUT of `mb` MiB through it (curl inside the namespace,
 * `shaped-link.sh check`), payload Mbit/s. CDP mode: the nominal rate (no raw client outside
 * the browser sees Chromium's throttle).
 */
export async function measureLink(l: Link, mb: number): Promise<{ mbit: number; detail: string }> {
  if (LINK_MODE !== 'netns') return { mbit: l.mbit, detail: 'CDP mode: nominal rate' };
  const { stdout } = await run('bash', [SHAPED_LINK, 'check', String(mb)], { timeout: 600_000 });
  const m = /([\d.]+) Mbit\/s/.exec(stdout);
  if (!m) throw new Error(`shaped-link check: ${stdout}`);
  return { mbit: Number(m[1]), detail: stdout.trim() };
}

/**
 * Waits until the uplink is quiet (nothing sent for 0.5 s, at most `maxS`): sockets of a closed
 * page keep draining their unsent PUT bytes through the queue, which would delay the next trial.
 */
export async function waitLinkIdle(maxS = 120): Promise<void> {
  if (LINK_MODE !== 'netns') return;
  await run('bash', [SHAPED_LINK, 'idle', String(maxS)], { timeout: (maxS + 10) * 1000 }).catch(() => undefined);
}

const sessions = new WeakMap<Page, CDPSession>();

/** Applies the link to an uploader page, before it loads anything. */
export async function shapePage(context: BrowserContext, page: Page, l: Link): Promise<void> {
  const cdp = await context.newCDPSession(page);
  sessions.set(page, cdp); // the emulation lives as long as the session
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: l.rttMs,
    downloadThroughput: -1,
    uploadThroughput: LINK_MODE === 'cdp' ? (l.mbit * 1e6) / 8 : -1,
  });
}
