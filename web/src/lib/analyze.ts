/**
 * Reads an MP4/MOV file's structure with Blob slices only: the top-level box headers (16 bytes
 * each) and the `moov` box, never the media data. Works the same whether the moov is at the
 * start (faststart) or at the end, and for files of any size.
 *
 * The planner's sample tables (typed arrays) are computed straight from the stbl boxes; mp4box's
 * per-sample objects, which only the segmenter needs, are built later (`ensureSampleLists`): for
 * a 30-minute video they are ~125k objects and ~100 ms of CPU and GC that the share link does not
 * have to wait for.
 */
import { BoxParser, createFile, ISOFile, MP4BoxBuffer } from 'mp4box';
import type { Movie, Sample } from 'mp4box';
import { MediaFileError } from './errors.ts';
import type { PlanTrackInput, SampleTable, TrackKind } from './planner.ts';

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
  codec: string;
  /** MIME type to test with MediaSource.isTypeSupported */
  mime: string;
  width?: number;
  height?: number;
  sampleRate?: number;
  channels?: number;
  /** how the edit list was handled (see README) */
  editList: 'none' | 'stripped' | 'kept';
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
  /** tracks present in the file but not streamed (timecode, metadata, second audio, ...) */
  ignored: { id: number; type: string; codec: string }[];
  boxes: TopLevelBox[];
  iso: ISOFile;
  /** mp4box's per-sample objects (trak.samples) exist: see ensureSampleLists */
  sampleListsBuilt: boolean;
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

interface StblTables {
  table: SampleTable;
  /** end of the last byte any sample refers to */
  maxEnd: number;
  /** samples use more than one sample description */
  mixedDescriptions: boolean;
}

/**
 * The sample table read from the stbl boxes into typed arrays, exactly as mp4box's
 * buildTrakSampleLists derives its sample objects (same chunk walk, same stts run indexing —
 * including its quirk of giving sample j-1 the delta of sample j's run — and the last sample
 * lasting up to the media duration), so the plan matches the segments built from those objects.
 */
function stblTables(trak: Trak): StblTables {
  const stbl = trak.mdia.minf.stbl;
  const stsz = stbl.stsz ?? stbl.stz2;
  const empty: SampleTable = { count: 0, dts: new Float64Array(0), duration: new Float64Array(0), size: new Float64Array(0), sync: new Uint8Array(0) };
  if (!stsz) return { table: empty, maxEnd: 0, mixedDescriptions: false };
  const sizes = stsz.sample_sizes as ArrayLike<number>;
  const count = sizes.length;
  const stco = (stbl.stco ?? stbl.co64) as { chunk_offsets: ArrayLike<number> };
  const stsc = stbl.stsc as { first_chunk: ArrayLike<number>; samples_per_chunk: ArrayLike<number>; sample_description_index: ArrayLike<number> };
  const stts = stbl.stts as { sample_counts: ArrayLike<number>; sample_deltas: ArrayLike<number> };
  const stss = stbl.stss as { sample_numbers: ArrayLike<number> } | undefined;
  const dts = new Float64Array(count);
  const duration = new Float64Array(count);
  const size = new Float64Array(count);
  const sync = new Uint8Array(count);
  let chunkIndex = 1;
  let chunkRun = 0;
  let lastChunkInRun = Infinity;
  let lastSampleInChunk = 0;
  let offsetInChunk = 0;
  let lastSampleInSttsRun = -1;
  let sttsRun = -1;
  let stssIndex = 0;
  let maxEnd = 0;
  let firstDescription = 0;
  let mixedDescriptions = false;
  for (let j = 0; j < count; j++) {
    const sz = sizes[j]!;
    size[j] = sz;
    if (j === 0) {
      chunkIndex = 1;
      chunkRun = 0;
      lastSampleInChunk = stsc.samples_per_chunk[0]!;
      offsetInChunk = 0;
      lastChunkInRun = stsc.first_chunk.length > 1 ? stsc.first_chunk[1]! - 1 : Infinity;
    } else if (j >= lastSampleInChunk) {
      chunkIndex++;
      offsetInChunk = 0;
      if (chunkIndex > lastChunkInRun) {
        chunkRun++;
        lastChunkInRun = chunkRun + 1 < stsc.first_chunk.length ? stsc.first_chunk[chunkRun + 1]! - 1 : Infinity;
      }
      lastSampleInChunk += stsc.samples_per_chunk[chunkRun]!;
    }
    const description = stsc.sample_description_index[chunkRun]! - 1;
    if (j === 0) firstDescription = description;
    else if (description !== firstDescription) mixedDescriptions = true;
    const offset = stco.chunk_offsets[chunkIndex - 1]! + offsetInChunk;
    offsetInChunk += sz;
    maxEnd = Math.max(maxEnd, offset + sz);
    if (j > lastSampleInSttsRun) {
      sttsRun++;
      if (lastSampleInSttsRun < 0) lastSampleInSttsRun = 0;
      lastSampleInSttsRun += stts.sample_counts[sttsRun]!;
    }
    if (j > 0) {
      duration[j - 1] = stts.sample_deltas[sttsRun]!;
      dts[j] = dts[j - 1]! + duration[j - 1]!;
    }
    if (stss) {
      if (j === stss.sample_numbers[stssIndex]! - 1) {
        sync[j] = 1;
        stssIndex++;
      }
    } else {
      sync[j] = 1;
    }
  }
  if (count > 0) duration[count - 1] = Math.max(trak.mdia.mdhd.duration - dts[count - 1]!, 0);
  return { table: { count, dts, duration, size, sync }, maxEnd, mixedDescriptions };
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

export interface AnalyzeOptions {
  fileName?: string;
}

export async function analyzeFile(file: ByteSource, options: AnalyzeOptions = {}): Promise<Analysis> {
  const fileName = options.fileName ?? ((file as Partial<File>).name || 'video.mp4');
  const boxes = await scanTopLevelBoxes(file);
  const moovs = boxes.filter((b) => b.type === 'moov');
  if (boxes.some((b) => b.type === 'moof')) {
    throw new MediaFileError('fragmented', 'This MP4 is already fragmented (moof boxes); such files are not supported yet.');
  }
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
  if (iso.moov.mvex) throw new MediaFileError('fragmented', 'This MP4 is a fragmented MP4; such files are not supported yet.');

  const tracks: AnalyzedTrack[] = [];
  const ignored: Analysis['ignored'] = [];
  let haveVideo = false;
  let haveAudio = false;
  const movieTracks = new Map(info.tracks.map((t) => [t.id, t]));
  for (const trak of iso.moov.traks) {
    const id = trak.tkhd.track_id;
    const t = movieTracks.get(id);
    const kind = trackKind(trak);
    const codec = t?.codec ?? 'unknown';
    if (!kind || !t || (kind === 'video' && haveVideo) || (kind === 'audio' && haveAudio)) {
      ignored.push({ id, type: kind ?? trak.mdia?.hdlr?.handler ?? 'unknown', codec });
      continue;
    }
    const { table, maxEnd, mixedDescriptions } = stblTables(trak);
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
    else haveAudio = true;
    const { pto, editList } = handleEditList(trak);
    const a: AnalyzedTrack = {
      id,
      kind,
      timescale: trak.mdia.mdhd.timescale,
      pto,
      samples: table,
      codec,
      mime: `${kind}/mp4; codecs="${codec}"`,
      editList,
      initSegment: new Uint8Array(0),
      trak,
    };
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

  // One init segment per track, written with the sample tables emptied (they are put back for
  // ensureSampleLists).
  withTablesEmptied(iso, () => {
    for (const t of tracks) t.initSegment = buildInitSegment(iso, t.trak);
  });

  const lead = tracks[0]!;
  const last = lead.samples.count - 1;
  const duration = ((lead.samples.dts[last] ?? 0) + (lead.samples.duration[last] ?? 0) - lead.pto) / lead.timescale;
  return { fileName, fileSize: file.size, duration, tracks, ignored, boxes, iso, sampleListsBuilt: false };
}
