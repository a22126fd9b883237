/**
 * Plans a file's sample tables with the page's planner and its default options, and compares
 * the plan with the CLI's: reads `chunkstream plan FILE --json` on stdin (the planner's input and
 * the CLI's output, in the shared vectors' format). Exit 0 and "same plan" if they agree; exit 1
 * with the first difference otherwise. The CLI's tests run it for every file they upload
 * (cli/tests/common, `page_plans_like_the_cli`), so files too large to commit as vectors are
 * compared too.
 *
 *   chunkstream plan FILE --json | (cd web && node --import tsx ../testdata/planner/check.ts)
 */
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { defaultPlanOptions, planSegments, validatePlan } from '../../web/src/lib/planner.ts';
import type { PlanTrackInput } from '../../web/src/lib/planner.ts';
import { toInput } from './json-track.ts';
import type { JsonTrack } from './json-track.ts';

const input = JSON.parse(readFileSync(0, 'utf8')) as { tracks: JsonTrack[]; expected: unknown };
const tracks: PlanTrackInput[] = input.tracks.map(toInput);
const plan = planSegments(tracks, defaultPlanOptions(tracks));
const problems = validatePlan(tracks, plan);
if (problems.length) {
  console.error(`the page's plan is invalid: ${problems[0]}`);
  process.exit(1);
}
const page = JSON.parse(JSON.stringify(plan)) as { options: unknown; slots: unknown[] };
const cli = input.expected as { options: unknown; slots: unknown[] };
if (!isDeepStrictEqual(page.options, cli.options)) {
  console.error(`options differ: page ${JSON.stringify(page.options)}, CLI ${JSON.stringify(cli.options)}`);
  process.exit(1);
}
const first = page.slots.findIndex((s, i) => !isDeepStrictEqual(s, cli.slots[i]));
if (first >= 0 || page.slots.length !== cli.slots.length || !isDeepStrictEqual(page, cli)) {
  const at = first >= 0 ? first : Math.min(page.slots.length, cli.slots.length);
  console.error(`plans differ: page ${page.slots.length} slots, CLI ${cli.slots.length}; first difference at slot ${at}`);
  console.error(`page: ${JSON.stringify(page.slots[at])}`);
  console.error(`CLI:  ${JSON.stringify(cli.slots[at])}`);
  process.exit(1);
}
console.log(`same plan: ${page.slots.length} slots, ${JSON.stringify(page.options)}`);
