/** Node side of the previews lab page script (helpers/previews-entry.ts). */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import type { LabResult } from './previews-entry.ts';
import { BASE_URL } from './browser.ts';
import { bundleForPage } from './bundle.ts';

const here = fileURLToPath(new URL('.', import.meta.url));

/** helpers/previews-entry.ts bundled for a page (an IIFE defining `previewsLab`). */
export async function labScript(): Promise<string> {
  return bundleForPage(join(here, 'previews-entry.ts'));
}

/** Builds and sends the previews of `file` from a page of the runner's origin. */
export async function runLab(page: Page, script: string, file: string, targetDuration: number): Promise<LabResult | null> {
  await page.goto(`${BASE_URL}/api/health`);
  await page.addScriptTag({ content: script });
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'file';
    input.id = 'lab-file';
    document.body.append(input);
  });
  await page.setInputFiles('#lab-file', file);
  return page.evaluate(
    (d) => (globalThis as unknown as { previewsLab: (i: HTMLInputElement, d: number) => Promise<LabResult | null> }).previewsLab(document.getElementById('lab-file') as HTMLInputElement, d),
    targetDuration,
  );
}

