/**
 * Reads an MP4/MOV file's structure with Blob slices only: the top-level box headers (16 bytes
 * each) and the `moov` box, never the media data. Works the same whether the moov is at the
 * start (faststart) or at the end, and for files of any size.
 *
 * Fragmented MP4s (OBS's crash-safe recordings, ffmpeg's `+frag_keyframe+empty_moov`) are read the
 * same way: the moov (empty sample tables + mvex) and then each `moof` box — the fragment headers,
 * never the media between them.
 *
 * Every track's samples are kept as typed arrays (`SampleStore`, samples.ts), straight from the
 * stbl or trun boxes: no object per sample, which for a multi-hour recording would cost hundreds
 * of MB. mp4box's per-sample objects are built only by the tests' reference builder
 * (`ensureSampleLists`).
 */
import { BoxParser, createFile, ISOFile, MP4BoxBuffer } from 'mp4box';
import type { Movie, Sample } from 'mp4box';
import { MediaFileError } from './errors.ts';
import type { PlanTrackInput, SampleTable, TrackKind } from './planner.ts';
import { nalCodec, realRandomAccess } from './random-access.ts';
import { FragmentError, readMoof, SampleStoreBuilder, storeFromStbl } from './samples.ts';
import type { FragmentTrack, SampleStore, StblBoxes, TrackDefaults } from './samples.ts';

export type Trak = ReturnType<ISOFile['getTrackById']>;

/** What we need from a file: a Blob satisfies it (and fs.openAsBlob in Node). */
export interface ByteSource {
  readonly size: number;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

export interface TopLevelBox {
  type: string;
  start: number;
  size: number;
  headerSize: number;
}

export interface AnalyzedTrack extends PlanTrackInput {
  samples: SampleStore;
  codec: string;
  /** MIME type to test with MediaSource.isTypeSupported */
  mime: string;
  width?: number;
  height?: number;
  sampleRate?: number;
  channels?: number;
  /** how the edit list was handled (see README) */
  editList: 'none' | 'stripped' | 'kept';
  /**
   * Media time subtracted from every composition offset when the fragments are written (trun
   * version 1), in place of a presentationTimeOffset: the stripped edit of a B-frame video, so its
   * decode times start at 0 and its presentation does too (see `foldedEdit`). 0 = none.
   */
  compositionShift: number;
  /** BCP 47 tag from the mdhd language ('und' = none) */
  language?: string;
  /** the track's name (udta/name, else a non-generic hdlr name) */
  label?: string;
  /** the audio track players should pick first (the first enabled one) */
  default: boolean;
  /** ftyp + moov(mvhd, trak, mvex) for this track alone */
  initSegment: Uint8Array;
  trak: Trak;
}

export interface Analysis {
  fileName: string;
  fileSize: number;
  /** seconds, lead track */
  duration: number;
  tracks: AnalyzedTrack[];
  /** tracks present in the file but not streamed (timecode, metadata, a second video, ...) */
  ignored: { id: number; type: string; codec: string }[];
  boxes: TopLevelBox[];
  iso: ISOFile;
  /** mp4box's per-sample objects (trak.samples) exist: see ensureSampleLists */
  sampleListsBuilt: boolean;
  /** the samples came from moof boxes (a fragmented MP4) */
  fragmented: boolean;
  /** things the uploader should tell the user (e.g. seeking will be slow) */
  notices: string[];
}

const FIRST_BOX_TYPES = new Set(['ftyp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot', 'uuid', 'meta', 'styp', 'sidx', 'pdin', 'junk']);
const MAX_TOP_LEVEL_BOXES = 100_000;
const MAX_MOOV_BYTES = 512 * 1024 * 1024;

async function readBytes(file: ByteSource, start: number, end: number): Promise<Uint8Array> {
  return new Uint8Array(await file.slice(start, end).arrayBuffer());
}

function formatSize(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

function fourcc(b: Uint8Array, at: number): string {
  return String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!);
}
function isPrintable4cc(b: Uint8Array, at: number): boolean {
  for (let i = at; i < at + 4; i++) {
    const c = b[i]!;
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/** Walk the top-level boxes reading only their headers. Throws MediaFileError for non-MP4, corrupt or truncated files. */
export async function scanTopLevelBoxes(file: ByteSource): Promise<TopLevelBox[]> {
  const size = file.size;
  if (size === 0) throw new MediaFileError('empty', 'The file is empty.');
  const boxes: TopLevelBox[] = [];
  let pos = 0;
  while (pos < size) {
    if (boxes.length >= MAX_TOP_LEVEL_BOXES) throw new MediaFileError('corrupt', 'The file has too many top-level boxes to be a regular MP4 video.');
    const head = await readBytes(file, pos, Math.min(size, pos + 16));
    const first = boxes.length === 0;
    if (head.length < 8) {
      if (first) throw new MediaFileError('not_mp4', 'This file is not an MP4/MOV video (it is too small).');
      // a few trailing bytes after the last box: tolerated (some tools pad files)
      break;
    }
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    let boxSize = view.getUint32(0);
    const type = fourcc(head, 4);
    if (!isPrintable4cc(head, 4) || (first && !FIRST_BOX_TYPES.has(type))) {
      if (first) throw new MediaFileError('not_mp4', 'This file is not an MP4/MOV video: it does not start with an MP4 box (ftyp/moov/mdat).');
      throw new MediaFileError('corrupt', `The file is damaged: unreadable data at byte ${pos}.`);
    }
    let headerSize = 8;
    if (boxSize === 1) {
      if (head.length < 16) throw new MediaFileError('truncated', 'The file is truncated (it ends inside a box header).');
      const hi = view.getUint32(8);
      const lo = view.getUint32(12);
      boxSize = hi * 2 ** 32 + lo;
      headerSize = 16;
    } else if (boxSize === 0) {
      boxSize = size - pos; // box extends to the end of the file
    }
    if (boxSize < headerSize) {
      if (first) throw new MediaFileError('not_mp4', 'This file is not an MP4/MOV video (invalid first box).');
      throw new MediaFileError('corrupt', `The file is damaged: invalid box size at byte ${pos}.`);
    }
    if (pos + boxSize > size) {
      const missing = pos + boxSize - size;
      const what = type === 'mdat' ? 'media data' : type === 'moov' ? 'movie header' : `'${type}' box`;
      throw new MediaFileError(
        'truncated',
        `The file is truncated: it ends ${formatSize(missing)} before the end of its ${what}. ` +
          'Was the download or copy interrupted? Try the complete file.',
      );
    }
    boxes.push({ type, start: pos, size: boxSize, headerSize });
    pos += boxSize;
  }
  return boxes;
}

/** The server takes at most 4 tracks: one video and this many audio tracks. */
export const MAX_AUDIO_TRACKS = 3;

/** ISO 639-2 codes of the commonest languages → their BCP 47 (ISO 639-1) form; others stay 3 letters, which BCP 47 allows. */
const ISO639_1: Record<string, string> = {
  eng: 'en', fra: 'fr', fre: 'fr', deu: 'de', ger: 'de', spa: 'es', ita: 'it', por: 'pt', nld: 'nl', dut: 'nl',
  rus: 'ru', ukr: 'uk', pol: 'pl', ces: 'cs', cze: 'cs', swe: 'sv', nor: 'no', dan: 'da', fin: 'fi', tur: 'tr',
  ell: 'el', gre: 'el', ara: 'ar', heb: 'he', hin: 'hi', jpn: 'ja', kor: 'ko', zho: 'zh', chi: 'zh', vie: 'vi',
  tha: 'th', ind: 'id', hun: 'hu', ron: 'ro', rum: 'ro', cat: 'ca', bul: 'bg', hrv: 'hr', srp: 'sr', slk: 'sk', slo: 'sk',
};

/** A track's language as a BCP 47 tag, or undefined for 'und'/unreadable. */
export function languageTag(code: string | undefined): string | undefined {
  const c = (code ?? '').trim().toLowerCase();
  if (!/^[a-z]{2,3}$/.test(c) || c === 'und' || c === 'mul' || c === 'zxx') return undefined;
  return ISO639_1[c] ?? c;
}

/** Handler names that tools write by default: not a name a person gave the track. */
const GENERIC_HANDLER = /handler|core media|media file|^(sound|video|audio)$|gpac|l-smash|mainconcept|apple/i;

/** The track's name: udta/name (ffmpeg's title), else a hdlr name someone chose. Printable, ≤ 64 chars, no quotes. */
export function trackLabel(trak: Trak): string | undefined {
  const udta = trak.udta as { boxes?: { type: string; name?: string }[] } | undefined;
  const candidates = [udta?.boxes?.find((b) => b.type === 'name')?.name, trak.mdia?.hdlr?.name];
  for (const raw of candidates) {
    if (typeof raw !== 'string') continue;
    const clean = Array.from(raw.replace(/[\u0000-\u001f\u007f"]/g, '').trim()).slice(0, 64).join('').trim();
    if (clean && !(raw === trak.mdia?.hdlr?.name && GENERIC_HANDLER.test(clean))) return clean;
  }
  return undefined;
}

function trackKind(trak: Trak): TrackKind | null {
  const h = trak.mdia?.hdlr?.handler;
  if (h === 'vide') return 'video';
  if (h === 'soun') return 'audio';
  return null;
}

/** A track's sample table as mp4box's sample objects would give it (test reference). */
export function sampleTableOf(samples: Sample[]): SampleTable {
  const count = samples.length;
  const dts = new Float64Array(count);
  const duration = new Float64Array(count);
  const size = new Float64Array(count);
  const sync = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const s = samples[i]!;
    dts[i] = s.dts;
    duration[i] = s.duration;
    size[i] = s.size;
    sync[i] = s.is_sync ? 1 : 0;
  }
  return { count, dts, duration, size, sync };
}

/** The stbl boxes of a trak as mp4box parsed them; null when it has no sample sizes. */
function stblBoxes(trak: Trak): StblBoxes | null {
  const stbl = trak.mdia.minf.stbl;
  const stsz = stbl.stsz ?? stbl.stz2;
  if (!stsz) return null;
  const stco = (stbl.stco ?? stbl.co64) as { chunk_offsets: ArrayLike<number> };
  return {
    sizes: stsz.sample_sizes as ArrayLike<number>,
    chunkOffsets: stco.chunk_offsets,
    stsc: stbl.stsc as StblBoxes['stsc'],
    stts: stbl.stts as StblBoxes['stts'],
    ctts: stbl.ctts as StblBoxes['ctts'],
    stss: stbl.stss as StblBoxes['stss'],
    mediaDuration: trak.mdia.mdhd.duration,
  };
}

const EMPTY_STORE: SampleStore = new SampleStoreBuilder().finish();

/** largest moof read; a fragment header of thousands of samples is ~16 bytes each */
const MAX_MOOF_BYTES = 64 * 1024 * 1024;
/** moofs read at once (each a separate slice) */
const MOOF_READS_IN_FLIGHT = 8;

/**
 * The samples of a fragmented file's tracks, from its `moof` boxes: each moof is read on its own
 * (its size is known from the box scan), never the media data between them.
 */
async function readFragments(file: ByteSource, boxes: TopLevelBox[], iso: ISOFile, trackIds: number[]): Promise<Map<number, FragmentTrack>> {
  const defaults = new Map<number, TrackDefaults>();
  for (const trex of (iso.moov.mvex?.trexs ?? []) as { track_id: number; default_sample_duration: number; default_sample_size: number; default_sample_flags: number; default_sample_description_index: number }[]) {
    defaults.set(trex.track_id, {
      duration: trex.default_sample_duration,
      size: trex.default_sample_size,
      flags: trex.default_sample_flags,
      descriptionIndex: trex.default_sample_description_index,
    });
  }
  const tracks = new Map<number, FragmentTrack>(trackIds.map((id) => [id, { builder: new SampleStoreBuilder(), nextDts: 0, maxEnd: 0, descriptions: new Set<number>() }]));
  const moofs = boxes.filter((b) => b.type === 'moof');
  for (let i = 0; i < moofs.length; i += MOOF_READS_IN_FLIGHT) {
    const batch = moofs.slice(i, i + MOOF_READS_IN_FLIGHT);
    const bytes = await Promise.all(
      batch.map((m) => {
        if (m.size > MAX_MOOF_BYTES) throw new MediaFileError('unsupported', `A movie fragment header of this file is too large (${formatSize(m.size)}).`);
        return readBytes(file, m.start, m.start + m.size);
      }),
    );
    batch.forEach((m, k) => {
      try {
        readMoof(bytes[k]!, m.start, defaults, tracks);
      } catch (e) {
        if (e instanceof FragmentError) throw new MediaFileError('corrupt', `The file is damaged: its movie fragment at byte ${m.start} cannot be read (${e.message}).`);
        throw e;
      }
    });
  }
  return tracks;
}

/**
 * Runs `fn` with the sample tables emptied as mp4box's resetTables does (what an init segment
 * needs), then puts them back so the sample objects can still be built from them.
 */
function withTablesEmptied<T>(iso: ISOFile, fn: () => T): T {
  type Tables = Record<string, unknown>;
  const saved = iso.moov.traks.map((trak) => {
    const stbl = trak.mdia.minf.stbl;
    const keep = (box: unknown, keys: string[]): [Tables, Tables] | null =>
      box ? [box as Tables, Object.fromEntries(keys.map((k) => [k, (box as Tables)[k]]))] : null;
    return {
      trak,
      tkhd: trak.tkhd.duration,
      mdhd: trak.mdia.mdhd.duration,
      boxes: [
        keep(stbl.stco ?? stbl.co64, ['chunk_offsets']),
        keep(stbl.stsc, ['first_chunk', 'samples_per_chunk', 'sample_description_index']),
        keep(stbl.stsz ?? stbl.stz2, ['sample_sizes']),
        keep(stbl.stts, ['sample_counts', 'sample_deltas']),
        keep(stbl.ctts, ['sample_counts', 'sample_offsets']),
      ],
    };
  });
  const mvhd = iso.moov.mvhd.duration;
  iso.resetTables();
  try {
    return fn();
  } finally {
    iso.moov.mvhd.duration = mvhd;
    for (const t of saved) {
      t.trak.tkhd.duration = t.tkhd;
      t.trak.mdia.mdhd.duration = t.mdhd;
      for (const b of t.boxes) if (b) Object.assign(b[0], b[1]);
    }
  }
}

/**
 * Builds mp4box's per-sample objects (trak.samples: offsets, flags, composition times…) of the
 * streamed tracks, which the segmenter needs, then empties the tables they came from. Idempotent.
 */
export function ensureSampleLists(analysis: Analysis): void {
  if (analysis.sampleListsBuilt) return;
  for (const t of analysis.tracks) analysis.iso.buildTrakSampleLists(t.trak);
  analysis.iso.resetTables();
  analysis.sampleListsBuilt = true;
}

/** Longest part the server accepts (its default cap), so the longest a video without random access may be one part. */
const MAX_PART_SECONDS = 120;

/**
 * Clears the sync flag of sync samples that are not real random-access points (random-access.ts),
 * so parts start only where a decoder can. If that leaves no random-access point after the first
 * frame (an x264 intra-refresh recording) and the video is too long for one part, the file's sync
 * samples (recovery points) are kept as cut points instead, with a notice: seeking into such a part
 * may need the parts before it.
 */
async function keepRealRandomAccess(file: ByteSource, trak: Trak, codec: string, table: SampleStore): Promise<string[]> {
  const nal = nalCodec(codec);
  const entry = trak.mdia.minf.stbl.stsd?.entries?.[0] as { avcC?: { lengthSizeMinusOne: number }; hvcC?: { lengthSizeMinusOne: number } } | undefined;
  const lengthSize = (entry?.avcC ?? entry?.hvcC)?.lengthSizeMinusOne;
  if (!nal || lengthSize === undefined) return [];
  const real = await realRandomAccess(file, table, lengthSize + 1, nal);
  let first = 0;
  while (first < table.count && !real[first]) first++;
  let realAfter = 0;
  let fileAfter = 0;
  let dropped = 0;
  for (let i = 0; i < table.count; i++) {
    if (real[i] && i > first) realAfter++;
    if (table.sync[i] && i > first) fileAfter++;
    if (table.sync[i] && !real[i]) dropped++;
  }
  if (dropped === 0) return [];
  const last = table.count - 1;
  const seconds = (table.dts[last]! + table.duration[last]! - table.dts[0]!) / trak.mdia.mdhd.timescale;
  if (realAfter > 0 || fileAfter === 0 || seconds <= MAX_PART_SECONDS) {
    table.sync.set(real);
    return realAfter > 0
      ? []
      : [`This video has no keyframe after its first frame (intra refresh): it is sent as one part, so it plays only once that part is uploaded.`];
  }
  return [
    `This video has no keyframe after its first frame (intra refresh): parts are cut at its recovery points, which some players ` +
      'cannot start from, so seeking will be slow or may not work until the parts before are loaded.',
  ];
}

/** ftyp for our init segments; the source's may be a QuickTime 'qt  ' one. */
function makeFtyp(): InstanceType<typeof BoxParser.box.ftyp> {
  const ftyp = new BoxParser.box.ftyp();
  ftyp.major_brand = 'iso6';
  ftyp.minor_version = 0;
  ftyp.compatible_brands = ['iso6', 'isom', 'mp41', 'dash'];
  return ftyp;
}

/** Boxes of the sample table that only describe the non-fragmented samples; dropped from init segments. */
const STBL_PER_SAMPLE_BOXES = new Set(['stss', 'stps', 'sdtp', 'sbgp', 'subs', 'stdp', 'cslg']);

function buildInitSegment(iso: ISOFile, trak: Trak): Uint8Array {
  const stbl = trak.mdia.minf.stbl;
  stbl.boxes = (stbl.boxes ?? []).filter((b) => b && !STBL_PER_SAMPLE_BOXES.has(b.type));
  const moov = new BoxParser.box.moov();
  moov.addBox(iso.moov.mvhd);
  moov.addBox(trak);
  const buf = ISOFile.writeInitializationSegment(makeFtyp(), moov, 0, new Set([trak.tkhd.track_id]));
  return new Uint8Array(buf.slice(0));
}

/**
 * Edit list handling. A single edit starting at media_time M (ffmpeg writes M = B-frame delay for
 * video, M = encoder priming for AAC) becomes presentationTimeOffset M with the edts removed, so
 * nothing shifts twice. Anything more complex keeps the elst and PTO = 0.
 */
function handleEditList(trak: Trak): { pto: number; editList: AnalyzedTrack['editList'] } {
  const entries = trak.edts?.elst?.entries ?? [];
  if (entries.length === 0) return { pto: 0, editList: 'none' };
  const only = entries[0]!;
  if (entries.length === 1 && only.media_time >= 0 && only.media_rate_integer === 1) {
    trak.boxes = (trak.boxes ?? []).filter((b) => b && b.type !== 'edts');
    trak.edts = undefined;
    trak.edtss = [];
    return { pto: only.media_time, editList: 'stripped' };
  }
  return { pto: 0, editList: 'kept' };
}

/**
 * The stripped edit of a video track that goes into its composition offsets instead of the
 * manifests' presentationTimeOffset (CMAF style: signed offsets, decode and presentation both
 * start at 0). With the edit as PTO, players set `timestampOffset = -PTO` and the first keyframe
 * decodes at a negative time: WebKit drops it, and with it its whole GOP, and dash.js then seeks
 * to the next keyframe while the pipeline prerolls, which deadlocks WebKitGTK (docs/webkit.md).
 * Only an edit no larger than the first sample's composition offset (the B-frame delay ffmpeg
 * writes), so no presentation time becomes negative; anything else keeps the PTO.
 */
export function foldedEdit(kind: TrackKind, editList: AnalyzedTrack['editList'], pto: number, samples: SampleStore): number {
  if (kind !== 'video' || editList !== 'stripped' || pto <= 0 || samples.count === 0) return 0;
  return (samples.cto[0] ?? 0) >= pto ? pto : 0;
}

export interface AnalyzeOptions {
  fileName?: string;
}

export async function analyzeFile(file: ByteSource, options: AnalyzeOptions = {}): Promise<Analysis> {
  const fileName = options.fileName ?? ((file as Partial<File>).name || 'video.mp4');
  const boxes = await scanTopLevelBoxes(file);
  const moovs = boxes.filter((b) => b.type === 'moov');
  const fragmented = boxes.some((b) => b.type === 'moof');
  if (moovs.length === 0) {
    throw new MediaFileError(
      'truncated',
      "This file has no movie header ('moov' box). It is probably truncated: an MP4 being written or " +
        'cut short keeps this header at the end.',
    );
  }
  if (moovs.length > 1) throw new MediaFileError('corrupt', "This file has more than one movie header ('moov').");
  const moovBox = moovs[0]!;
  if (moovBox.size > MAX_MOOV_BYTES) throw new MediaFileError('unsupported', 'The movie header of this file is too large.');

  const iso = createFile(false);
  let info: Movie | undefined;
  let parseError: string | undefined;
  // no sample objects at parse time (see ensureSampleLists)
  iso.sampleListBuilt = true;
  iso.onError = (module, message) => {
    parseError = `${module}: ${message}`;
  };
  // Parse ftyp + moov on their own (fileStart 0): sample offsets come from stco/co64, i.e.
  // absolute positions in the real file, so nothing else needs to be read here.
  const ftypBox = boxes.find((b) => b.type === 'ftyp' && b.size <= 4096);
  const ftypBytes = ftypBox ? await readBytes(file, ftypBox.start, ftypBox.start + ftypBox.size) : new Uint8Array(0);
  if (!ftypBox) iso.ftyp = makeFtyp(); // old QuickTime files have none; mp4box's getInfo wants one
  const moovBytes = await readBytes(file, moovBox.start, moovBox.start + moovBox.size);
  if (moovBytes.byteLength !== moovBox.size) throw new MediaFileError('truncated', 'The file could not be read completely.');
  const both = new Uint8Array(ftypBytes.byteLength + moovBytes.byteLength);
  both.set(ftypBytes, 0);
  both.set(moovBytes, ftypBytes.byteLength);
  try {
    iso.appendBuffer(MP4BoxBuffer.fromArrayBuffer(both.buffer, 0), true);
    if (iso.moov && !parseError) {
      for (const trak of iso.moov.traks) {
        // what getInfo reads from the (not yet built) sample lists
        trak.samples ??= [];
        trak.samples_size ??= 0;
        trak.samples_duration ??= 0;
      }
      info = iso.getInfo();
    }
  } catch (e) {
    console.warn('mp4box:', e);
    throw new MediaFileError('corrupt', "The file is damaged: its movie header ('moov' box) cannot be read.");
  }
  if (!info || parseError) {
    if (parseError) console.warn('mp4box:', parseError);
    throw new MediaFileError('corrupt', "The file is damaged: its movie header ('moov' box) cannot be read.");
  }
  const fragments = fragmented
    ? await readFragments(
        file,
        boxes,
        iso,
        iso.moov.traks.map((t) => t.tkhd.track_id),
      )
    : null;

  const tracks: AnalyzedTrack[] = [];
  const ignored: Analysis['ignored'] = [];
  const notices: string[] = [];
  let haveVideo = false;
  let audioTracks = 0;
  const movieTracks = new Map(info.tracks.map((t) => [t.id, t]));
  for (const trak of iso.moov.traks) {
    const id = trak.tkhd.track_id;
    const t = movieTracks.get(id);
    const kind = trackKind(trak);
    const codec = t?.codec ?? 'unknown';
    if (!kind || !t || (kind === 'video' && haveVideo) || (kind === 'audio' && audioTracks >= MAX_AUDIO_TRACKS)) {
      ignored.push({ id, type: kind ?? trak.mdia?.hdlr?.handler ?? 'unknown', codec });
      continue;
    }
    const stbl = stblBoxes(trak);
    const fromStbl = stbl ? storeFromStbl(stbl) : { store: EMPTY_STORE, maxEnd: 0, mixedDescriptions: false };
    let table = fromStbl.store;
    let { maxEnd, mixedDescriptions } = fromStbl;
    const frag = fragments?.get(id);
    if (frag && frag.builder.count > 0) {
      // samples in the moov (rare) come first, then the fragments'
      const all = new SampleStoreBuilder();
      for (let i = 0; i < table.count; i++) all.push(table.dts[i]!, table.duration[i]!, table.size[i]!, table.offset[i]!, table.cto[i]!, table.sync[i] === 1);
      const f = frag.builder.finish();
      // tfdt is the absolute decode time: fragments continue the moov's timeline
      for (let i = 0; i < f.count; i++) all.push(f.dts[i]!, f.duration[i]!, f.size[i]!, f.offset[i]!, f.cto[i]!, f.sync[i] === 1);
      table = all.finish();
      maxEnd = Math.max(maxEnd, frag.maxEnd);
      mixedDescriptions ||= frag.descriptions.size > 1;
    }
    if (table.count === 0) {
      if (kind === 'video' && !haveVideo) {
        throw new MediaFileError('corrupt', `The file is damaged or incomplete: its video track (${codec}) has no frames.`);
      }
      ignored.push({ id, type: kind, codec });
      continue;
    }
    const entries = trak.mdia.minf.stbl.stsd?.entries ?? [];
    if (entries.length > 1 && mixedDescriptions) {
      throw new MediaFileError('unsupported', `Track ${id} changes its codec settings midway (several sample descriptions); this is not supported.`);
    }
    if (maxEnd > file.size) {
      throw new MediaFileError(
        'truncated',
        `The file is truncated: its ${kind} data should extend to byte ${maxEnd} but the file has only ${file.size} bytes.`,
      );
    }
    if (kind === 'video') haveVideo = true;
    else audioTracks++;
    if (kind === 'video') notices.push(...(await keepRealRandomAccess(file, trak, codec, table)));
    const { pto, editList } = handleEditList(trak);
    const compositionShift = foldedEdit(kind, editList, pto, table);
    const a: AnalyzedTrack = {
      id,
      kind,
      timescale: trak.mdia.mdhd.timescale,
      pto,
      samples: table,
      codec,
      mime: `${kind}/mp4; codecs="${codec}"`,
      editList,
      compositionShift,
      default: false,
      initSegment: new Uint8Array(0),
      trak,
    };
    const language = languageTag(trak.mdia.mdhd.languageString);
    if (language) a.language = language;
    const label = trackLabel(trak);
    if (label) a.label = label;
    if (kind === 'video') {
      a.width = t.video?.width ?? t.track_width;
      a.height = t.video?.height ?? t.track_height;
    } else {
      a.sampleRate = t.audio?.sample_rate ?? trak.mdia.mdhd.timescale;
      a.channels = t.audio?.channel_count ?? 2;
    }
    tracks.push(a);
  }
  if (tracks.length === 0) {
    throw new MediaFileError('no_tracks', 'This file contains no video or audio track that could be streamed.');
  }
  // video first, then audio
  tracks.sort((x, y) => (x.kind === y.kind ? 0 : x.kind === 'video' ? -1 : 1));
  // the default audio track: the first enabled one (tkhd flag 1; ffmpeg enables one per alternate group), else the first
  const audio = tracks.filter((t) => t.kind === 'audio');
  const enabled = audio.find((t) => (t.trak.tkhd.flags & 1) === 1) ?? audio[0];
  if (enabled) enabled.default = true;

  // One init segment per track, written with the sample tables emptied (they are put back for
  // ensureSampleLists).
  withTablesEmptied(iso, () => {
    for (const t of tracks) t.initSegment = buildInitSegment(iso, t.trak);
  });

  const lead = tracks[0]!;
  const last = lead.samples.count - 1;
  const duration = ((lead.samples.dts[last] ?? 0) + (lead.samples.duration[last] ?? 0) - lead.pto) / lead.timescale;
  return { fileName, fileSize: file.size, duration, tracks, ignored, boxes, iso, sampleListsBuilt: false, fragmented, notices };
}
