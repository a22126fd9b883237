/**
 * A WebKit engine (the Safari family) driven over plain W3C WebDriver: Debian's WebKitWebDriver
 * with MiniBrowser, on a virtual X display (xvfb) inside its own D-Bus session. No Playwright
 * build of WebKit (that would be a downloaded browser).
 *
 * Every WebDriver call has a client-side time limit: a WebProcess blocked for good (the GStreamer
 * deadlocks in docs/webkit.md) makes script execution hang, and that must fail the test with a
 * message, not stall the file.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { access } from 'node:fs/promises';
import { createServer } from 'node:net';

export const MINIBROWSER = process.env.MINIBROWSER_PATH ?? '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
const DRIVER = 'WebKitWebDriver';
const CALL_LIMIT_MS = 20_000;

export class WebDriverTimeout extends Error {}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Fails with what to do when the engine is missing (scripts/setup.sh installs it). */
export async function assertWebKitInstalled(): Promise<void> {
  try {
    await access(MINIBROWSER);
  } catch {
    throw new Error(`WebKitGTK's MiniBrowser is not at ${MINIBROWSER}: run scripts/setup.sh (or set SKIP_WEBKIT=1 to leave these tests out)`);
  }
}

export interface WebKitOptions {
  /** MiniBrowser settings, e.g. `{ 'enable-mediasource': false }` (a browser without MSE) */
  settings?: Record<string, boolean | string>;
  /** environment of the browser, e.g. `WEBKIT_GST_ENABLE_HLS_SUPPORT=1` */
  env?: Record<string, string>;
}

export class WebKit {
  private constructor(
    private readonly driver: ChildProcess,
    private readonly base: string,
    private readonly session: string,
    readonly log: string[],
  ) {}

  static async launch(opts: WebKitOptions = {}): Promise<WebKit> {
    const port = await freePort();
    const log: string[] = [];
    // its own process group, so close() ends xvfb, the driver, MiniBrowser and its WebProcesses
    const driver = spawn('dbus-run-session', ['--', 'xvfb-run', '-a', '-s', '-screen 0 1280x800x24', DRIVER, `--port=${port}`], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    // D-Bus's session chatter (a11y activation, fd limits) says nothing about the page
    const noise = /dbus-daemon|SpiRegistry|org\.a11y|^\s*$/;
    const keep = (d: Buffer): void => {
      for (const line of d.toString().split('\n')) if (!noise.test(line)) log.push(line);
      if (log.length > 400) log.splice(0, log.length - 400);
    };
    driver.stdout?.on('data', keep);
    driver.stderr?.on('data', keep);
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const res = await fetch(`${base}/status`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline || driver.exitCode !== null) {
        killGroup(driver);
        throw new Error(`WebKitWebDriver did not start:\n${log.slice(-20).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const args = ['--automation', ...Object.entries(opts.settings ?? {}).map(([k, v]) => `--${k}=${String(v)}`)];
    const created = await call<{ sessionId: string }>(base, 'POST', '/session', {
      capabilities: {
        alwaysMatch: {
          pageLoadStrategy: 'none',
          'webkitgtk:browserOptions': { binary: MINIBROWSER, args },
        },
      },
    }, 60_000).catch((e: unknown) => {
      killGroup(driver);
      throw e;
    });
    return new WebKit(driver, base, created.sessionId, log);
  }

  async goto(url: string): Promise<void> {
    await call(this.base, 'POST', `/session/${this.session}/url`, { url });
  }

  /** Runs `body` (a function body; `arguments` holds `args`) in the page; bounded by `limitMs`. */
  async evaluate<T>(body: string, args: unknown[] = [], limitMs = CALL_LIMIT_MS): Promise<T> {
    return call<T>(this.base, 'POST', `/session/${this.session}/execute/sync`, { script: body, args }, limitMs);
  }

  /** Polls `body` until it returns a truthy value; the last value is in the error message. */
  async waitFor<T>(body: string, args: unknown[], timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      last = await this.evaluate<T>(body, args);
      if (last) return last as T;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async close(): Promise<void> {
    await call(this.base, 'DELETE', `/session/${this.session}`, undefined, 10_000).catch(() => undefined);
    killGroup(this.driver);
  }
}

function killGroup(p: ChildProcess): void {
  if (p.pid === undefined || p.exitCode !== null) return;
  try {
    process.kill(-p.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

async function call<T>(base: string, method: string, path: string, body?: unknown, limitMs = CALL_LIMIT_MS): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(limitMs),
    });
  } catch (e) {
    if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')) {
      throw new WebDriverTimeout(`WebDriver ${method} ${path} did not answer within ${limitMs} ms (the WebProcess is blocked)`);
    }
    throw e;
  }
  const json = (await res.json()) as { value: T & { error?: string; message?: string } };
  if (!res.ok) throw new Error(`WebDriver ${method} ${path}: ${res.status} ${json.value?.error ?? ''} ${json.value?.message ?? ''}`);
  return json.value;
}
