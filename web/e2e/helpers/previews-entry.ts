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
import { loadSession } from '../../src/lib/session-store.ts';

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

/**
 * `targetDuration` > 0: a new session for the file (no part is ever uploaded). 0: the session the
 * uploader page of this origin is running for the same file (from its localStorage), planned
 * with the same options, so tile i is that session's slot i.
 */
async function run(input: HTMLInputElement, targetDuration: number): Promise<LabResult | null> {
  const file = input.files![0]!;
  const analysis = await analyzeFile(file, { fileName: file.name });
  const fingerprint = await fingerprintFile(file, file.name);
  const stored = targetDuration > 0 ? null : loadSession(fingerprint);
  if (targetDuration <= 0 && !stored) throw new Error('no uploader session for this file in localStorage');
  const plan = planSegments(analysis.tracks, stored ? stored.options : { targetDuration });
  const created = stored
    ? { video_id: stored.videoId, upload_secret: stored.secret }
    : await new Api('').createSession(sessionRequest(analysis, plan, fingerprint));
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
