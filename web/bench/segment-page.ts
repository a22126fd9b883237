/**
 * In-page side of benchmark 5 (bundled by run.ts with esbuild and injected into a blank page):
 * the uploader's own analysis, planner and segmenter on a picked File, with no network, and the
 * raw `Blob.slice().arrayBuffer()` read of the same file as the baseline.
 */
import { analyzeFile, ensureSampleLists } from '../src/lib/analyze.ts';
import type { Analysis } from '../src/lib/analyze.ts';
import { planSegments } from '../src/lib/planner.ts';
import type { Plan } from '../src/lib/planner.ts';
import { Segmenter } from '../src/lib/segmenter.ts';

let state: { file: File; analysis: Analysis; plan: Plan; segmenter: Segmenter } | null = null;

function pickedFile(): File {
  const input = document.getElementById('f') as HTMLInputElement | null;
  const file = input?.files?.[0];
  if (!file) throw new Error('no file picked');
  return file;
}

const bench = {
  /** moov read + parse, and planning (10 s slots) */
  async analyze(): Promise<{ analyzeMs: number; planMs: number; slots: number; segments: number; bytes: number; fileSize: number; avgSegment: number }> {
    const file = pickedFile();
    const t0 = performance.now();
    const analysis = await analyzeFile(file, { fileName: file.name });
    const t1 = performance.now();
    const plan = planSegments(analysis.tracks, { targetDuration: 10 });
    const t2 = performance.now();
    state = { file, analysis, plan, segmenter: new Segmenter(file, analysis, plan) };
    const segments = plan.slots.length * analysis.tracks.length;
    return {
      analyzeMs: t1 - t0,
      planMs: t2 - t1,
      slots: plan.slots.length,
      segments,
      bytes: plan.totalBytes,
      fileSize: file.size,
      avgSegment: plan.totalBytes / segments,
    };
  },

  /**
   * every segment of every slot built as the uploader does it (Segmenter.buildSlot); `readBack`:
   * and read out of the Blob again (the uploader hands the Blob to fetch instead)
   */
  async segmentAll(readBack: boolean): Promise<{ ms: number; bytes: number; segments: number }> {
    if (!state) throw new Error('analyze first');
    const { plan, analysis, segmenter } = state;
    const tracks = analysis.tracks.map((_, i) => i);
    let bytes = 0;
    let segments = 0;
    const t0 = performance.now();
    for (let slot = 0; slot < plan.slots.length; slot++) {
      for (const blob of await segmenter.buildSlot(slot, tracks)) {
        bytes += readBack ? (await blob.arrayBuffer()).byteLength : blob.size;
        segments++;
      }
    }
    return { ms: performance.now() - t0, bytes, segments };
  },

  /** for comparison: the first `maxSlots` slots as Blobs of file slices (Segmenter.buildBlob), read out */
  async segmentBlobs(maxSlots: number): Promise<{ ms: number; bytes: number; segments: number }> {
    if (!state) throw new Error('analyze first');
    const { plan, analysis, segmenter } = state;
    let bytes = 0;
    let segments = 0;
    const t0 = performance.now();
    for (let slot = 0; slot < Math.min(maxSlots, plan.slots.length); slot++) {
      for (let t = 0; t < analysis.tracks.length; t++) {
        bytes += (await segmenter.buildBlob(slot, t).arrayBuffer()).byteLength;
        segments++;
      }
    }
    return { ms: performance.now() - t0, bytes, segments };
  },

  /** sequential raw reads of the whole file in `chunk`-byte slices */
  async rawRead(chunk: number): Promise<{ ms: number; bytes: number }> {
    const file = pickedFile();
    let bytes = 0;
    const t0 = performance.now();
    for (let at = 0; at < file.size; at += chunk) {
      const buf = await file.slice(at, Math.min(file.size, at + chunk)).arrayBuffer();
      bytes += buf.byteLength;
    }
    return { ms: performance.now() - t0, bytes };
  },

  /**
   * Baseline of the sample-table memory: mp4box's per-sample objects for the same tracks (what the
   * segmenter used before it wrote moofs from the typed-array stores). Kept alive until release().
   */
  async sampleObjects(): Promise<{ ms: number; samples: number }> {
    if (!state) throw new Error('analyze first');
    const t0 = performance.now();
    ensureSampleLists(state.analysis);
    const samples = state.analysis.tracks.reduce((n, t) => n + t.trak.samples.length, 0);
    return { ms: performance.now() - t0, samples };
  },

  release(): void {
    state = null;
  },
};

(globalThis as unknown as { __segmentBench: typeof bench }).__segmentBench = bench;
