/** A track of the shared planner vectors' JSON (and of `chunkstream plan FILE --json`), and its planner input. */
import { makeSampleTable } from '../../web/src/lib/planner.ts';
import type { PlanTrackInput } from '../../web/src/lib/planner.ts';

export interface JsonTrack {
  id: number;
  kind: 'video' | 'audio';
  timescale: number;
  pto: number;
  samples: { dts: number[]; duration: number[]; size: number[]; sync: number[] };
}

export function toInput(t: JsonTrack): PlanTrackInput {
  return { id: t.id, kind: t.kind, timescale: t.timescale, pto: t.pto, samples: makeSampleTable(t.samples) };
}
