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
import { DEFAULT_PLAN_OPTIONS, makeSampleTable, planSegments, validatePlan } from '../src/lib/planner.ts';
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
      const plan = planSegments(tracks, v.options ?? {});
      assert.deepEqual(validatePlan(tracks, plan), []);
      assert.deepEqual(plan, v.expected);
    });
  }
  it('defaults.json plans with the defaults and pins them (the CLI pins the same ones)', () => {
    const v = vectors.find(([n]) => n === 'defaults.json')?.[1];
    assert.ok(v);
    assert.equal(v.options, null);
    assert.deepEqual(DEFAULT_PLAN_OPTIONS, v.expected.options);
  });
  it('every other vector states its options', () => {
    for (const [name, v] of vectors) if (name !== 'defaults.json') assert.ok(v.options, name);
  });
});
