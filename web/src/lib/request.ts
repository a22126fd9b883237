import type { Analysis } from './analyze.ts';
import type { CreateSessionRequest, PlanTrackJson } from './api.ts';
import type { Plan } from './planner.ts';

/** The POST /api/videos body for an analysed file and its plan (docs/api.md). */
export function sessionRequest(analysis: Analysis, plan: Plan, fingerprint: string): CreateSessionRequest {
  const tracks: PlanTrackJson[] = analysis.tracks.map((t) => {
    const j: PlanTrackJson = {
      id: t.id,
      kind: t.kind,
      codec: t.codec,
      timescale: t.timescale,
      // a folded edit is in the fragments' composition offsets instead (AnalyzedTrack.compositionShift)
      presentation_time_offset: t.pto - t.compositionShift,
      init_size: t.initSegment.byteLength,
    };
    if (t.kind === 'video') {
      if (t.width) j.width = Math.round(t.width);
      if (t.height) j.height = Math.round(t.height);
    } else {
      if (t.sampleRate) j.sample_rate = Math.round(t.sampleRate);
      if (t.channels) j.channels = t.channels;
      if (t.default) j.default = true;
    }
    if (t.language) j.language = t.language;
    if (t.label) j.label = t.label;
    return j;
  });
  const name = analysis.fileName.split(/[\\/]/).pop() ?? analysis.fileName;
  return {
    file_name: Array.from(name).slice(0, 255).join(''),
    fingerprint,
    tracks,
    slots: plan.slots.map((s) => ({ tracks: s.tracks.map((x) => ({ start: x.start, duration: x.duration, size: x.size })) })),
  };
}
