/**
 * "My videos" on the uploader page: the owner's videos from the server (title, duration, size, state,
 * created), each with open / copy link / resume / delete, and the API-key prompt (asked once, kept in
 * localStorage). Resume reads the file again through the handle the page kept for it where the
 * browser allows it (lib/file-handles.ts), else asks for the same file: either way the page finds the
 * session by the file's fingerprint.
 */
import { forgetKey, looksLikeKey, needsKey, OwnerApi, saveKey } from './lib/credentials.ts';
import type { VideoSummary } from './lib/credentials.ts';
import { formatBytes, formatDuration } from './ui.ts';

const el = <T extends HTMLElement = HTMLElement>(id: string): T | null => document.getElementById(id) as T | null;

function stateText(v: VideoSummary): string {
  if (v.state === 'ready') return 'ready';
  if (v.state === 'processing') return 'checking the last parts';
  if (v.state === 'gone') return 'removed';
  if (v.state === 'damaged') return 'damaged: its stored state cannot be read (delete it and upload again)';
  return `uploading (${v.published_slots}/${v.total_slots} parts playable)`;
}

function button(label: string, onClick: () => void, secondary = true): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (secondary) b.className = 'secondary';
  b.addEventListener('click', onClick);
  return b;
}

export interface MyVideosHooks {
  /** Resume clicked (a user gesture: the handler may ask for a permission) */
  onResume: (v: VideoSummary) => void;
  /** a video was deleted (after the server confirmed) */
  onDeleted?: (videoId: string) => void;
  /** the owner's list as the server gave it; `listedAt`: when it was asked for (ms since the epoch) */
  onListed?: (videos: readonly VideoSummary[], listedAt: number) => void;
}

export class MyVideos {
  constructor(
    private readonly api: OwnerApi,
    private readonly hooks: MyVideosHooks,
  ) {
    el<HTMLFormElement>('key-form')?.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = el<HTMLInputElement>('key-input');
      const key = input?.value.trim() ?? '';
      if (!looksLikeKey(key)) {
        this.keyMessage('That does not look like a Chunkstream API key (csk_…).');
        return;
      }
      saveKey(key);
      if (input) input.value = '';
      void this.refresh();
    });
    el('key-forget')?.addEventListener('click', () => {
      forgetKey();
      void this.refresh();
    });
  }

  private keyMessage(text: string): void {
    const m = el('key-message');
    if (m) m.textContent = text;
  }

  /** Shows the key prompt (with why) instead of the list. */
  askForKey(reason: string): void {
    const prompt = el('key-prompt');
    if (prompt) prompt.hidden = false;
    this.keyMessage(reason);
    const section = el('my-videos');
    if (section) section.hidden = true;
  }

  async refresh(): Promise<void> {
    const section = el('my-videos');
    const list = el('my-videos-list');
    if (!section || !list) return;
    let videos: VideoSummary[];
    const listedAt = Date.now();
    try {
      videos = (await this.api.videos()).videos;
    } catch (e) {
      if (needsKey(e)) this.askForKey('This server needs an API key to upload. Paste the key you were given.');
      return;
    }
    const prompt = el('key-prompt');
    if (prompt) prompt.hidden = true;
    section.hidden = false;
    list.replaceChildren();
    if (videos.length === 0) {
      const li = document.createElement('li');
      li.className = 'hint';
      li.textContent = 'No videos yet.';
      list.append(li);
    }
    for (const v of videos) list.append(this.row(v));
    this.hooks.onListed?.(videos, listedAt);
  }

  private row(v: VideoSummary): HTMLLIElement {
    const li = document.createElement('li');
    li.dataset.videoId = v.video_id;
    const title = document.createElement('strong');
    title.textContent = v.title;
    const details = document.createElement('span');
    details.className = 'hint';
    const created = new Date(v.created_ms).toLocaleString();
    const expiry = v.kept || !v.expires_ms ? 'kept' : `until ${new Date(v.expires_ms).toLocaleDateString()}`;
    details.textContent = ` ${formatDuration(v.duration_secs)} · ${formatBytes(v.size_bytes)} · ${stateText(v)} · ${created} · ${expiry}`;
    const open = document.createElement('a');
    open.href = v.watch_url;
    open.target = '_blank';
    open.rel = 'noopener';
    open.className = 'button secondary';
    open.textContent = 'Open';
    const actions = document.createElement('span');
    actions.className = 'actions';
    actions.append(
      open,
      button('Copy link', () => void navigator.clipboard?.writeText(v.watch_url)),
    );
    if (v.state === 'uploading') actions.append(button('Resume', () => this.hooks.onResume(v)));
    actions.append(
      button(v.kept ? 'Let expire' : 'Keep', () => void this.api.keep(v.video_id, !v.kept).then(() => this.refresh())),
      button('Delete', () => {
        if (!confirm(`Delete “${v.title}”? The link stops working and every part is removed.`)) return;
        void this.api.remove(v.video_id).then(() => {
          this.hooks.onDeleted?.(v.video_id);
          return this.refresh();
        });
      }),
    );
    li.append(title, details, document.createElement('br'), actions);
    return li;
  }
}
