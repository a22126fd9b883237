import { analyzeFile } from './lib/analyze.ts';
import type { Analysis } from './lib/analyze.ts';
import { Api, ApiError } from './lib/api.ts';
import type { PresignedUpload, StatusResponse } from './lib/api.ts';
import { MediaFileError } from './lib/errors.ts';
import { fingerprintFile } from './lib/fingerprint.ts';
import { Pacer } from './lib/pacer.ts';
import { previewSideUploads } from './lib/previews.ts';
import { DEFAULT_PLAN_OPTIONS, defaultPlanOptions, planSegments, validatePlan } from './lib/planner.ts';
import type { Plan, PlanOptions, PlanTrackInput } from './lib/planner.ts';
import { matchSessionOffsets, sessionRequest } from './lib/request.ts';
import { Segmenter } from './lib/segmenter.ts';
import { forgetSession, forgetSessionsOf, loadSession, saveSession } from './lib/session-store.ts';
import type { StoredSession } from './lib/session-store.ts';
import { trace } from './lib/trace.ts';
import { describe, Uploader } from './lib/uploader.ts';
import type { LocalSlotState, ProgressInfo } from './lib/uploader.ts';
import { drawSlotMap, formatBytes, formatDuration, formatRate } from './ui.ts';
import { needsKey, OwnerApi } from './lib/credentials.ts';
import type { VideoSummary } from './lib/credentials.ts';
import {
  canKeepHandles,
  fallbackMessage,
  fileForResume,
  filePicker,
  handleIsStale,
  handleOfDroppedItem,
  HandleStore,
  indexedDbBackend,
  isAbort,
} from './lib/file-handles.ts';
import type { OpenFilePickerOptions } from './lib/file-handles.ts';
import { MyVideos } from './my-videos.ts';

type PageState = 'idle' | 'analyzing' | 'confirm' | 'creating' | 'uploading' | 'pausing' | 'paused' | 'complete' | 'error' | 'cancelled';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
};

const params = new URLSearchParams(location.search);
const MAX_SLOTS = 20_000;
const numParam = (name: string): number | null => {
  const v = params.get(name);
  if (v === null || v.trim() === '') return null;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : null;
};

const settings = {
  seg: $<HTMLInputElement>('set-seg'),
  cap: $<HTMLInputElement>('set-cap'),
  par: $<HTMLInputElement>('set-par'),
  bw: $<HTMLInputElement>('set-bw'),
};
// empty: the part duration follows the file's bitrate (defaultPlanOptions)
settings.seg.value = numParam('seg') ? String(numParam('seg')) : '';
settings.cap.value = String(numParam('cap') ?? DEFAULT_PLAN_OPTIONS.maxSegmentBytes / (1024 * 1024));
settings.par.value = String(numParam('par') ?? 4);
const bwParam = numParam('bw');
settings.bw.value = bwParam ? String(bwParam / 1e6) : '';

function planOptions(tracks: readonly PlanTrackInput[]): PlanOptions {
  const seg = Number(settings.seg.value);
  const cap = Number(settings.cap.value);
  return {
    targetDuration: settings.seg.value.trim() !== '' && seg > 0 ? seg : defaultPlanOptions(tracks).targetDuration,
    maxSegmentBytes: cap > 0 ? Math.round(cap * 1024 * 1024) : DEFAULT_PLAN_OPTIONS.maxSegmentBytes,
  };
}
function bandwidth(): number | null {
  const mbps = Number(settings.bw.value);
  return settings.bw.value.trim() !== '' && mbps > 0 ? mbps * 1e6 : null;
}
function parallel(): number {
  const n = Math.round(Number(settings.par.value));
  return n >= 1 ? Math.min(8, n) : 4;
}

const apiBase = (params.get('api') ?? '').replace(/\/$/, '');
const api = new Api(apiBase, {
  onRetry: (e, attempt, delay) => showConnection(`Connection problem (${describe(e)}); retrying in ${Math.ceil(delay / 1000)} s (attempt ${attempt + 1}).`),
  onRecovered: () => showConnection(null),
});

const ownerApi = new OwnerApi(apiBase);
// each upload's file handle by video id (Chromium), so that Resume need not ask for the file
const handles = new HandleStore<FileSystemFileHandle>(canKeepHandles() ? indexedDbBackend<FileSystemFileHandle>() : null, Date.now, (what, e) =>
  console.debug('[chunkstream]', `file handle ${what} failed: ${describe(e)}`),
);
const myVideos = new MyVideos(ownerApi, {
  onResume: (v) => void resumeVideo(v),
  onDeleted: (id) => {
    void handles.forget(id);
    forgetSessionsOf(id);
  },
  // handles of videos that are complete, deleted or expired are of no more use
  onListed: (videos, listedAt) =>
    void handles.prune(new Set(videos.filter((v) => v.state === 'uploading' || v.state === 'processing').map((v) => v.video_id)), listedAt),
});
void myVideos.refresh();

let current: { uploader: Uploader | null; token: number } = { uploader: null, token: 0 };

function setState(s: PageState): void {
  document.body.dataset.state = s;
}

function showMessage(kind: 'error' | 'warn' | 'info' | 'ok', text: string): void {
  const el = $('message');
  el.hidden = false;
  el.className = `message ${kind}`;
  el.textContent = text;
}
function hideMessage(): void {
  $('message').hidden = true;
}
function showConnection(text: string | null): void {
  const el = $('connection');
  el.hidden = !text;
  el.textContent = text ?? '';
}

function resetUi(): void {
  current.uploader?.stop();
  current = { uploader: null, token: current.token + 1 };
  for (const id of ['confirm', 'info', 'share', 'progress', 'slots', 'idle']) $(id).hidden = true;
  hideMessage();
  showConnection(null);
  delete document.body.dataset.videoId;
}

function range(durations: number[]): string {
  const lo = formatDuration(Math.min(...durations));
  const hi = formatDuration(Math.max(...durations));
  return lo === hi ? lo : `${lo}–${hi}`;
}

function describeTracks(a: Analysis, plan: Plan): string {
  const parts = a.tracks.map((t) =>
    t.kind === 'video'
      ? `video ${t.codec} ${t.width}×${t.height}`
      : `audio${t.label ? ` “${t.label}”` : ''}${t.language ? ` (${t.language})` : ''} ${t.codec} ${t.sampleRate} Hz ${t.channels} ch`,
  );
  const durations = plan.slots.map((s) => s.durationTime);
  return (
    `${formatDuration(a.duration)} · ${formatBytes(a.fileSize)} · ${parts.join(' · ')} · ` +
    `${plan.slots.length} part${plan.slots.length === 1 ? '' : 's'} of ${range(durations)}` +
    (a.ignored.length ? ` · ${a.ignored.length} other track(s) not streamed` : '') +
    a.notices.map((n) => ` · ${n}`).join('')
  );
}

/** Resolves true for "upload anyway", false for "cancel". */
function confirmUnsupported(text: string): Promise<boolean> {
  setState('confirm');
  $('confirm-text').textContent = text;
  $('confirm').hidden = false;
  return new Promise((resolve) => {
    const yes = $('confirm-yes');
    const no = $('confirm-no');
    const done = (v: boolean) => {
      yes.removeEventListener('click', onYes);
      no.removeEventListener('click', onNo);
      $('confirm').hidden = true;
      resolve(v);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    yes.addEventListener('click', onYes);
    no.addEventListener('click', onNo);
    yes.focus();
  });
}

function codecName(codec: string): string {
  const c = codec.toLowerCase();
  if (c.startsWith('hvc1') || c.startsWith('hev1')) return 'HEVC (H.265)';
  if (c.startsWith('avc')) return 'H.264';
  if (c.startsWith('vp09')) return 'VP9';
  if (c.startsWith('av01')) return 'AV1';
  if (c.startsWith('mp4a')) return 'AAC';
  return codec;
}

function showShare(s: StoredSession): void {
  $('share').hidden = false;
  const link = $<HTMLInputElement>('link');
  link.value = s.watchUrl;
  $<HTMLAnchorElement>('open').href = s.watchUrl;
  document.body.dataset.videoId = s.videoId;
}

$('copy').addEventListener('click', async () => {
  const link = $<HTMLInputElement>('link');
  try {
    await navigator.clipboard.writeText(link.value);
    $('copied').textContent = 'Link copied.';
  } catch {
    link.select();
    const ok = document.execCommand?.('copy');
    $('copied').textContent = ok ? 'Link copied.' : 'Select the link and copy it (Ctrl+C).';
  }
});

let lastStates: readonly LocalSlotState[] = [];
let lastStatus: StatusResponse | null = null;
function renderSlots(states: readonly LocalSlotState[]): void {
  lastStates = states;
  const canvas = $<HTMLCanvasElement>('slotmap');
  drawSlotMap(canvas, states, lastStatus?.priority_slots ?? []);
  const count = (k: LocalSlotState[]) => states.filter((s) => k.includes(s)).length;
  $('slot-summary').textContent =
    `${count(['published'])} of ${states.length} parts playable · ${count(['generating', 'uploading'])} uploading · ` +
    `${count(['uploaded'])} being checked · ${count(['failed'])} failed · ${count(['pending', 'assigned'])} waiting` +
    (lastStatus?.priority_slots.length ? ` · a viewer asked for part ${lastStatus.priority_slots[0]} first` : '');
}
window.addEventListener('resize', () => renderSlots(lastStates));

function renderProgress(p: ProgressInfo): void {
  const frac = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 0;
  $('bar-fill').style.width = `${(frac * 100).toFixed(1)}%`;
  const parts = [`${Math.floor(frac * 100)}%`, `${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}`];
  if (p.bytesPerSecond > 0) parts.push(formatRate(p.bytesPerSecond));
  if (p.etaSeconds !== null && p.etaSeconds > 0) parts.push(`about ${formatDuration(p.etaSeconds)} left`);
  parts.push(`${p.slotsPublished}/${p.slotCount} parts playable`);
  $('progress-text').textContent = parts.join(' · ');
  (window as unknown as { chunkstreamProgress: ProgressInfo }).chunkstreamProgress = p;
}

interface StartOptions {
  /** the file's handle (picker, drop, or the one kept for Resume): kept for the upload's video */
  handle?: Promise<FileSystemFileHandle | null> | FileSystemFileHandle | null;
  /** Resume of this video: never start a new session instead */
  resumeOf?: string;
}

/** Resume in "My videos": through the kept file handle where possible, else ask for the file. */
async function resumeVideo(v: VideoSummary): Promise<void> {
  const state = document.body.dataset.state ?? '';
  if (document.body.dataset.videoId === v.video_id) {
    if (state === 'paused') {
      $('pause').click(); // the page's own Resume
      return;
    }
    if (['analyzing', 'creating', 'uploading', 'pausing'].includes(state)) {
      showMessage('info', `“${v.title}” is already uploading on this page.`);
      return;
    }
  }
  const token = current.token;
  const kept = await handles.load(v.video_id);
  if (kept) showMessage('info', `Opening ${kept.fileName} again…`);
  const outcome = await fileForResume(v.video_id, kept, {
    fingerprint: (f) => fingerprintFile(f, f.name),
    sessionVideoId: (fp) => loadSession(fp)?.videoId ?? null,
  });
  if (token !== current.token) return; // another file was picked meanwhile
  trace('resume', { via: outcome.kind === 'file' ? 'handle' : outcome.reason });
  if (outcome.kind === 'fallback') {
    if (outcome.detail) console.debug('[chunkstream]', `resume through the kept file failed: ${outcome.reason} (${outcome.detail})`);
    if (handleIsStale(outcome)) void handles.forget(v.video_id);
    showMessage(outcome.reason === 'no-handle' ? 'info' : 'warn', fallbackMessage(outcome.reason, v.title, kept?.fileName ?? null, canKeepHandles()));
    return;
  }
  await handleFile(outcome.file, { handle: kept?.handle ?? null, resumeOf: v.video_id });
}

async function handleFile(file: File, opts: StartOptions = {}): Promise<void> {
  trace('file-picked', { size: file.size });
  resetUi();
  const token = current.token;
  const stale = () => token !== current.token;
  setState('analyzing');
  showMessage('info', `Reading ${file.name}…`);
  let analysis: Analysis;
  let fingerprint: string;
  // the fingerprint (three small reads + SHA-256) runs while the moov is read and parsed
  const fingerprinting = fingerprintFile(file, file.name).then((f) => {
    trace('fingerprinted');
    return f;
  });
  fingerprinting.catch(() => undefined); // awaited below unless the analysis fails first
  try {
    analysis = await analyzeFile(file, { fileName: file.name });
    trace('analyzed', { moovBytes: analysis.boxes.find((b) => b.type === 'moov')?.size ?? null });
    fingerprint = await fingerprinting;
  } catch (e) {
    if (stale()) return;
    setState('error');
    if (e instanceof MediaFileError) showMessage('error', `${file.name}: ${e.message} Nothing was uploaded.`);
    else showMessage('error', `${file.name} could not be read as a video (${describe(e)}). Nothing was uploaded.`);
    return;
  }
  if (stale()) return;

  // Can this browser play it? (viewers most likely use a similar browser)
  const unsupported = analysis.tracks.filter((t) => typeof MediaSource === 'undefined' || !MediaSource.isTypeSupported(t.mime));
  if (unsupported.length) {
    hideMessage();
    const what = unsupported.map((t) => `${t.kind} codec ${codecName(t.codec)} (${t.codec})`).join(' and ');
    const go = await confirmUnsupported(
      `Warning: this browser cannot play the ${what} of ${file.name}. Viewers whose browser lacks support ` +
        'will not be able to watch it (Chunkstream does not re-encode). Upload it anyway?',
    );
    if (stale()) return;
    if (!go) {
      setState('cancelled');
      showMessage('info', 'Upload cancelled. Nothing was uploaded.');
      return;
    }
  }

  let stored = loadSession(fingerprint);
  let planOpts = stored?.options ?? planOptions(analysis.tracks);
  let plan = planSegments(analysis.tracks, planOpts);
  // the server refuses more than MAX_SLOTS slots (its default cap): use longer parts for very long videos
  while (!stored && plan.slots.length > MAX_SLOTS && planOpts.targetDuration < 120) {
    planOpts = { ...planOpts, targetDuration: planOpts.targetDuration * 2 };
    plan = planSegments(analysis.tracks, planOpts);
  }
  trace('planned', { slots: plan.slots.length });
  const problems = validatePlan(analysis.tracks, plan);
  if (problems.length) {
    setState('error');
    showMessage('error', `Internal error while planning the upload: ${problems[0]}`);
    return;
  }
  $('info').hidden = false;
  $('info-name').textContent = file.name;
  $('info-details').textContent = describeTracks(analysis, plan);

  let initUploads: PresignedUpload[] | null = null;
  let resumedStatus: StatusResponse | null = null;
  if (stored && (stored.slotCount !== plan.slots.length || stored.totalBytes !== plan.totalBytes)) stored = null;
  if (stored) {
    try {
      resumedStatus = await api.status(stored.videoId);
      if (resumedStatus.slot_count !== plan.slots.length) throw new ApiError(409, 'mismatch', 'different plan');
      // its manifests carry the offsets it was created with: the parts still to send must match them
      if (!matchSessionOffsets(analysis.tracks, stored.ptos)) throw new ApiError(409, 'mismatch', 'different presentation offsets');
      initUploads = resumedStatus.complete ? [] : (await api.freshInitUploads(stored.videoId, stored.secret)).init_uploads;
    } catch (e) {
      if (e instanceof ApiError && e.status < 500) {
        forgetSession(fingerprint);
        void handles.forget(stored.videoId);
        stored = null;
        resumedStatus = null;
      } else {
        setState('error');
        showMessage('error', `Could not reach the server to resume this upload (${describe(e)}).`);
        return;
      }
    }
  }
  if (stale()) return;
  if (!stored && opts.resumeOf) {
    // Resume must not quietly start another video
    void handles.forget(opts.resumeOf);
    setState('error');
    showMessage('error', `The earlier upload of ${file.name} cannot be continued any more (the server no longer has it as it was). Pick the file again to upload it as a new video.`);
    return;
  }
  if (!stored) {
    setState('creating');
    try {
      const body = sessionRequest(analysis, plan, fingerprint);
      trace('create-request');
      const res = await ownerApi.createSession(body);
      trace('create-response');
      stored = {
        videoId: res.video_id,
        secret: res.upload_secret,
        watchUrl: res.watch_url,
        manifestUrl: res.manifest_url,
        fileName: file.name,
        fileSize: file.size,
        slotCount: plan.slots.length,
        totalBytes: plan.totalBytes,
        options: plan.options,
        createdAt: new Date().toISOString(),
        ptos: body.tracks.map((t) => t.presentation_time_offset),
      };
      initUploads = res.init_uploads;
      saveSession(fingerprint, stored);
      void myVideos.refresh();
    } catch (e) {
      if (stale()) return;
      setState('error');
      if (needsKey(e)) myVideos.askForKey(`The server needs a valid API key (${describe(e)}). Paste it below, then pick the file again.`);
      showMessage('error', `The server refused this video: ${describe(e)}`);
      return;
    }
  }
  const handle = (await opts.handle) ?? null;
  if (stale()) return;
  // kept before the upload runs, so that completing it (which forgets the handle) comes after
  if (handle && !resumedStatus?.complete) void handles.save(stored.videoId, handle, file.name, fingerprint);
  showShare(stored);
  trace('link-shown', { videoId: stored.videoId });
  if (resumedStatus) showMessage('info', `Resuming the upload of ${file.name} (same link as before).`);
  else hideMessage();
  $('progress').hidden = false;
  $('slots').hidden = false;

  const segmenter = new Segmenter(file, analysis, plan);
  const session = stored;
  // seek-bar previews (one decoded keyframe per part; `?previews=0` turns them off)
  const sideUploads = params.get('previews') === '0' ? {} : { sideUploads: () => previewSideUploads(apiBase, session.videoId, session.secret, file, analysis, plan) };
  const uploader = new Uploader(api, stored.videoId, stored.secret, analysis, plan, segmenter, { parallel: parallel(), ...(bandwidth() ? { pacer: new Pacer(bandwidth()) } : {}), ...sideUploads }, {
    onSlotStates: renderSlots,
    onProgress: renderProgress,
    onConnection: showConnection,
    onStatus: (s) => {
      lastStatus = s;
    },
    onLog: (m) => console.debug('[chunkstream]', m),
    onTrace: trace,
    onIdle: (reason) => {
      const el = $('idle');
      el.hidden = !reason;
      el.textContent = reason ?? '';
    },
  });
  current.uploader = uploader;
  (window as unknown as { chunkstream: unknown }).chunkstream = { uploader, plan, analysis, segmenter, session: { videoId: stored.videoId } };
  if (resumedStatus) uploader.applyStatus(resumedStatus);
  renderSlots(uploader.states);
  renderProgress(uploader.progress());
  const pauseButton = $<HTMLButtonElement>('pause');
  pauseButton.hidden = false;
  pauseButton.disabled = false;
  pauseButton.textContent = 'Pause';
  pauseButton.onclick = () => {
    if (document.body.dataset.state === 'uploading') {
      uploader.pause();
      setState('pausing');
      pauseButton.disabled = true;
      pauseButton.textContent = 'Pausing…';
    } else if (document.body.dataset.state === 'paused') {
      hideMessage();
      void runUpload();
    }
  };
  const runUpload = async (): Promise<void> => {
    setState('uploading');
    pauseButton.disabled = false;
    pauseButton.textContent = 'Pause';
    try {
      if (initUploads?.length) {
        await uploader.uploadInit(initUploads);
        initUploads = null;
      }
      const result = await uploader.run();
      if (stale()) return;
      showConnection(null);
      if (result === 'paused') {
        setState('paused');
        pauseButton.disabled = false;
        pauseButton.textContent = 'Resume';
        showMessage(
          'info',
          handle
            ? 'Upload paused. The link keeps working for the parts already uploaded. Press Resume here, or later Resume in My videos (even after closing this page), to continue.'
            : 'Upload paused. The link keeps working for the parts already uploaded. Press Resume, or pick the same file again later (even after closing this page), to continue.',
        );
        return;
      }
      setState('complete');
      void handles.forget(session.videoId);
      pauseButton.hidden = true;
      $('idle').hidden = true;
      showMessage('ok', `Upload complete: ${file.name} is fully available at the link.`);
    } catch (e) {
      if (stale() || uploader.signal.aborted) return;
      setState('error');
      pauseButton.hidden = true;
      showMessage('error', `Upload stopped: ${describe(e)}. Pick the same file again to resume.`);
    }
  };
  await runUpload();
}

const input = $<HTMLInputElement>('file');
const PICKER: OpenFilePickerOptions = {
  id: 'chunkstream-video',
  multiple: false,
  types: [{ description: 'MP4, M4V or MOV video', accept: { 'video/mp4': ['.mp4', '.m4v'], 'video/quicktime': ['.mov'] } }],
};
let plainInput = false; // the picker failed (not cancelled): the plain input from then on
// "choose a file": the File System Access picker where there is one (its handle lets Resume in
// My videos reopen the file later), else the input's own dialog
input.addEventListener('click', (e) => {
  const pick = filePicker();
  if (!pick || plainInput || !canKeepHandles()) return;
  e.preventDefault();
  pick(PICKER).then(
    async ([h]) => {
      if (!h) return;
      let f: File;
      try {
        f = await h.getFile();
      } catch (err) {
        showMessage('error', `${h.name} could not be read (${describe(err)}). Nothing was uploaded.`);
        return;
      }
      void handleFile(f, { handle: h });
    },
    (err: unknown) => {
      if (isAbort(err)) return; // the dialog was cancelled
      console.debug('[chunkstream]', `file picker failed (${describe(err)}): using the file input`);
      plainInput = true;
      input.click();
    },
  );
});
input.addEventListener('change', () => {
  const f = input.files?.[0];
  input.value = ''; // so that picking the same file again (resume, retry) fires 'change' again
  if (f) void handleFile(f);
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const dt = e.dataTransfer;
  // the handle must be asked for now, in the event (the items are unreadable afterwards)
  const item = dt ? Array.from(dt.items).find((i) => i.kind === 'file') : undefined;
  const handle = canKeepHandles() ? handleOfDroppedItem(item) : Promise.resolve(null);
  const f = dt?.files[0];
  if (f) void handleFile(f, { handle });
});
window.addEventListener('beforeunload', (e) => {
  if (['uploading', 'pausing'].includes(document.body.dataset.state ?? '')) e.preventDefault();
});
