/**
 * Writes the shared planner vectors (testdata/planner/*.json): sample tables in, the
 * page's plan out. Both clients' test suites run them (web/test/planner-vectors.test.ts,
 * cli/tests/planner_vectors.rs), so a change to one planner that the other lacks fails
 * a vector. The expected plans come from the page's planner (web/src/lib/planner.ts).
 *
 *   cd web && npx tsx ../testdata/planner/generate.ts [extra-input.json …]
 *
 * Extra inputs are `chunkstream plan FILE --json` outputs (sample tables of real files,
 * e.g. ffmpeg-made ones with B-frames and edit lists); their name is the file's base name.
 * Each vector states its options explicitly, except `defaults.json` and `auto-*.json`,
 * which plan with each side's defaults (the part duration from the bitrate) and pin them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultPlanOptions, makeSampleTable, planSegments } from '../../web/src/lib/planner.ts';
import type { PlanOptions, PlanTrackInput } from '../../web/src/lib/planner.ts';
import { toInput } from './json-track.ts';
import type { JsonTrack } from './json-track.ts';

const here = dirname(fileURLToPath(import.meta.url));


function toJson(t: PlanTrackInput): JsonTrack {
  const s = t.samples;
  return {
    id: t.id,
    kind: t.kind,
    timescale: t.timescale,
    pto: t.pto,
    samples: { dts: Array.from(s.dts), duration: Array.from(s.duration), size: Array.from(s.size), sync: Array.from(s.sync) },
  };
}

/** 30 fps video, keyframes at the given seconds, `keyBytes`/`frameBytes` per frame */
function video(seconds: number, keyframes: number[], o: { frameBytes?: number; keyBytes?: number; pto?: number; openGop?: number } = {}): PlanTrackInput {
  const n = Math.round(seconds * 30);
  const keys = new Set(keyframes.map((t) => Math.round(t * 30)));
  const sync: number[] = [];
  const size: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = keys.has(i) && i >= (o.openGop ?? 0);
    sync.push(k ? 1 : 0);
    size.push(k ? (o.keyBytes ?? 20000) : (o.frameBytes ?? 2000) + ((i * 37) % 500));
  }
  return { id: 1, kind: 'video', timescale: 15360, pto: o.pto ?? 0, samples: makeSampleTable({ duration: new Array(n).fill(512), size, sync }) };
}

function audio(seconds: number, o: { pto?: number; id?: number; rate?: number } = {}): PlanTrackInput {
  const rate = o.rate ?? 48000;
  const n = Math.ceil((seconds * rate) / 1024);
  const size = Array.from({ length: n }, (_, i) => 300 + ((i * 13) % 40));
  return { id: o.id ?? 2, kind: 'audio', timescale: rate, pto: o.pto ?? 0, samples: makeSampleTable({ duration: new Array(n).fill(1024), size, sync: new Array(n).fill(1) }) };
}

const every = (seconds: number, gop: number): number[] => Array.from({ length: Math.ceil(seconds / gop) }, (_, i) => i * gop);

interface Case {
  name: string;
  description: string;
  tracks: PlanTrackInput[];
  /** null: each side's defaults */
  options: PlanOptions | null;
}

const opts = (targetDuration: number, maxSegmentBytes = 16 * 1024 * 1024): PlanOptions => ({ targetDuration, maxSegmentBytes });

const cases: Case[] = [
  { name: 'regular-gops', description: '2 s GOPs, 10 s target: 10 s slots on keyframes', tracks: [video(60, every(60, 2)), audio(60)], options: opts(10) },
  { name: 'tie-to-earlier', description: '4 s GOPs: 8 and 12 are equally near 10, the earlier wins', tracks: [video(40, every(40, 4))], options: opts(10) },
  { name: 'irregular-gops', description: 'irregular keyframes; end of stream as a candidate', tracks: [video(45, [0, 0.7, 3, 9.5, 11, 25, 26, 40]), audio(45)], options: opts(10) },
  { name: 'byte-cap', description: 'the cap walks back to the latest keyframe that fits; one GOP over the cap stays whole', tracks: [video(60, [...every(30, 1), 40, 55], { frameBytes: 30000 }), audio(60)], options: opts(10, 2 * 1024 * 1024) },
  { name: 'open-gop-start', description: 'video starting on non-sync frames: they are skipped, audio starts nearest the first keyframe', tracks: [video(30, every(30, 2), { openGop: 20 }), audio(30)], options: opts(6) },
  { name: 'presentation-offsets', description: 'edit-list offsets (B-frame delay, AAC priming) on both tracks, 4 s target', tracks: [video(33, every(33, 2), { pto: 1024 }), audio(33, { pto: 1024, rate: 44100 })], options: opts(4) },
  { name: 'audio-ends-early', description: 'audio shorter than video: cuts that would leave audio empty are dropped', tracks: [video(40, every(40, 2)), audio(12)], options: opts(5) },
  { name: 'audio-only', description: 'no video: the first (audio) track leads', tracks: [audio(50)], options: opts(10) },
  { name: 'defaults', description: "each side's default options, a low bitrate (~80 kB/s): the automatic duration's upper bound, 8 s", tracks: [video(64, every(64, 2)), audio(64)], options: null },
  { name: 'auto-high-bitrate', description: 'default options, ~630 kB/s: the automatic duration floors at 2 s', tracks: [video(40, every(40, 2), { frameBytes: 20000 }), audio(40)], options: null },
  { name: 'auto-middle-bitrate', description: 'default options, ~230 kB/s: 1 MB per part is ~4 s', tracks: [video(40, every(40, 1), { frameBytes: 6500 }), audio(40)], options: null },
];

for (const extra of process.argv.slice(2)) {
  const j = JSON.parse(readFileSync(extra, 'utf8')) as { options: PlanOptions; tracks: JsonTrack[] };
  const name = basename(extra).replace(/\.json$/, '');
  cases.push({ name, description: `sample tables of ${name} (ffmpeg-made), as the CLI read them`, tracks: j.tracks.map(toInput), options: j.options });
}

for (const c of cases) {
  const plan = planSegments(c.tracks, c.options ?? defaultPlanOptions(c.tracks));
  const vector = {
    description: c.description,
    options: c.options,
    tracks: c.tracks.map(toJson),
    expected: plan,
  };
  writeFileSync(join(here, `${c.name}.json`), JSON.stringify(vector) + '\n');
  console.log(`${c.name}: ${plan.slots.length} slots${c.options ? '' : ` (defaults: ${JSON.stringify(plan.options)})`}`);
}
