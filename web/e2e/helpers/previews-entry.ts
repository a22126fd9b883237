/**
 * Test-only page script (bundled by e2e/previews.test.ts and injected into a page of the runner's
 * origin): creates a session for the picked file the way the uploader page does, then builds and
 * sends its seek-bar previews with web/src/lib/previews.ts — and uploads no part at all.
 */
import { analyzeFile } from '../../src/lib/analyze.ts';
import { Api } from '../../src/lib/api.ts';
import { fingerprintFile } from '../../src/lib/fingerprint.ts';
import { planSegments } from '../../src/lib/planner.ts';
import { buildPreviews, fetchPreviewLayout, sendPreviews } from '../../src/lib/previews.ts';
import { sessionRequest } from '../../src/lib/request.ts';

export interface LabResult {
  videoId: string;
  slotCount: number;
  sprites: number;
  bytes: number;
  tilesDrawn: number;
  tilesFailed: number;
  decodeMs: number;
  encodeMs: number;
  sendMs: number;
  note?: string;
}

async function run(input: HTMLInputElement, targetDuration: number): Promise<LabResult | null> {
  const file = input.files![0]!;
  const analysis = await analyzeFile(file, { fileName: file.name });
  const plan = planSegments(analysis.tracks, { targetDuration });
  const created = await new Api('').createSession(sessionRequest(analysis, plan, await fingerprintFile(file, file.name)));
  const layout = await fetchPreviewLayout('', created.video_id);
  const built = await buildPreviews(file, analysis, plan, layout);
  if (!built) return null;
  const t0 = performance.now();
  await sendPreviews('', created.video_id, created.upload_secret, built);
  const out: LabResult = {
    videoId: created.video_id,
    slotCount: plan.slots.length,
    sprites: built.sprites.length,
    bytes: built.bytes,
    tilesDrawn: built.tilesDrawn,
    tilesFailed: built.tilesFailed,
    decodeMs: Math.round(built.decodeMs),
    encodeMs: Math.round(built.encodeMs),
    sendMs: Math.round(performance.now() - t0),
  };
  if (built.note) out.note = built.note;
  return out;
}

(globalThis as unknown as { previewsLab: typeof run }).previewsLab = run;
