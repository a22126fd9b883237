/**
 * The shared planner vectors (testdata/planner/*.json): the page's planner must still
 * produce exactly the plans recorded there, which the CLI's planner is held to as well
 * (cli/tests/planner_vectors.rs). Regenerate with testdata/planner/generate.ts only for
 * an intended change of the planning rules — and change the CLI's planner with it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PLAN_OPTIONS, autoTargetDuration, defaultPlanOptions, makeSampleTable, planSegments, validatePlan } from '../src/lib/planner.ts';
import type { Plan, PlanOptions, PlanTrackInput } from '../src/lib/planner.ts';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'testdata', 'planner');

interface Vector {
  description: string;
  options: PlanOptions | null;
  tracks: { id: number; kind: 'video' | 'audio'; timescale: number; pto: number; samples: { dts: number[]; duration: number[]; size: number[]; sync: number[] } }[];
  expected: Plan;
}

const vectors: [string, Vector][] = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => [f, JSON.parse(readFileSync(join(dir, f), 'utf8')) as Vector]);

const inputs = (v: Vector): PlanTrackInput[] =>
  v.tracks.map((t) => ({ id: t.id, kind: t.kind, timescale: t.timescale, pto: t.pto, samples: makeSampleTable(t.samples) }));

describe('shared planner vectors (same files as the CLI)', () => {
  it('has the vectors', () => assert.ok(vectors.length >= 10, `found ${vectors.length}`));
  for (const [name, v] of vectors) {
    it(`${name}: ${v.description}`, () => {
      const tracks = inputs(v);
      const plan = planSegments(tracks, v.options ?? defaultPlanOptions(tracks));
      assert.deepEqual(validatePlan(tracks, plan), []);
      assert.deepEqual(plan, v.expected);
    });
  }
  const byDefault = (name: string): boolean => name === 'defaults.json' || name.startsWith('auto-');
  it('the default-option vectors pin the automatic part duration at both bounds and between', () => {
    const auto = vectors.filter(([n]) => byDefault(n));
    assert.equal(auto.length, 3);
    const durations = auto.map(([, v]) => {
      assert.equal(v.options, null);
      assert.equal(v.expected.options.maxSegmentBytes, DEFAULT_PLAN_OPTIONS.maxSegmentBytes);
      assert.equal(v.expected.options.targetDuration, autoTargetDuration(inputs(v)));
      return v.expected.options.targetDuration;
    });
    assert.deepEqual([...durations].sort((a, b) => a - b), [2, 4, 8]);
  });
  it('every other vector states its options', () => {
    for (const [name, v] of vectors) if (!byDefault(name)) assert.ok(v.options, name);
  });
});
