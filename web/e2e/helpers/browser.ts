/** Debian's Chromium driven by playwright-core (no browser download). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext } from 'playwright-core';

export const BASE_URL = (process.env.CHUNKSTREAM_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CLOSE_LIMIT_MS = 20_000;

/** `executablePath`: e.g. a launcher that runs Chromium in a network namespace (web/bench). */
export async function launch(opts: { executablePath?: string } = {}): Promise<{ context: BrowserContext; userDataDir: string; close: () => Promise<void> }> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'chunkstream-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: opts.executablePath ?? CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
      '--disable-quic',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-dev-shm-usage',
    ],
    viewport: { width: 1000, height: 800 },
  });
  return {
    context,
    userDataDir,
    close: async () => {
      // bounded: a browser that never finishes closing must not keep the test file alive
      // (the file's runner force-exits once its tests are done)
      let timer: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), CLOSE_LIMIT_MS);
      });
      const outcome = await Promise.race([context.close().catch(() => undefined), gaveUp]);
      clearTimeout(timer);
      if (outcome === 'timeout') console.log(`# Chromium did not close within ${CLOSE_LIMIT_MS} ms; left to the test runner's exit`);
      await rm(userDataDir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}
