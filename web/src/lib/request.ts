import { foldedEdit } from './analyze.ts';
import type { Analysis, AnalyzedTrack } from './analyze.ts';
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

/**
 * Resuming: makes the fragments agree with the presentation time offsets the session was created
 * with (its MPD and playlists carry them). A session stored before edits were folded into
 * composition offsets has no `sentPtos`: each track's whole edit was its PTO, so nothing is folded
 * for it. False when the offsets cannot be matched (the session is not this file's).
 */
export function matchSessionOffsets(tracks: AnalyzedTrack[], sentPtos: readonly number[] | undefined): boolean {
  // stored in localStorage: anything but one number per track is not this session's
  if (sentPtos !== undefined && (!Array.isArray(sentPtos) || sentPtos.length !== tracks.length || !sentPtos.every(Number.isInteger))) return false;
  const shifts: number[] = [];
  for (const [i, t] of tracks.entries()) {
    const shift = t.pto - (sentPtos?.[i] ?? t.pto);
    // either nothing folded, or exactly the fold the analysis finds possible for this track
    if (shift !== 0 && shift !== foldedEdit(t.kind, t.editList, t.pto, t.samples)) return false;
    shifts.push(shift);
  }
  tracks.forEach((t, i) => (t.compositionShift = shifts[i]!));
  return true;
}
