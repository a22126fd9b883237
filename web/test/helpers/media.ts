/** Test media made with Debian's ffmpeg, at test time, into a temp dir. Shared by unit and e2e tests. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function sh(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { maxBuffer: 256 * 1024 * 1024, timeout: opts.timeoutMs ?? 300_000 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.stderr?.slice(-2000) ?? err.message}`);
  }
}

export async function makeTempDir(prefix = 'chunkstream-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface ClipOptions {
  seconds: number;
  width?: number;
  height?: number;
  fps?: number;
  audio?: boolean;
  codec?: 'h264' | 'vp9' | 'hevc';
  faststart?: boolean;
  /** x264 params, e.g. keyint=450:min-keyint=20:scenecut=40 */
  x264params?: string;
  /** splice several different synthetic scenes of irregular lengths (forces scene-cut keyframes) */
  scenes?: boolean;
  /** video bitrate, e.g. '2M'; default: crf */
  bitrate?: string;
  /** add noise (incompressible, high bitrate) */
  noise?: boolean;
  /** several audio tracks (as OBS records desktop and microphone), each with optional metadata */
  audioTracks?: { language?: string; handler?: string; title?: string }[];
  /** extra output options, e.g. ['-movflags', '+frag_keyframe+empty_moov'] */
  extra?: string[];
}

const FF = ['-hide_banner', '-loglevel', 'error', '-y'];

export async function makeClip(path: string, o: ClipOptions): Promise<string> {
  const w = o.width ?? 320;
  const h = o.height ?? 180;
  const fps = o.fps ?? 30;
  const args = [...FF];
  let vf: string[] = [];
  if (o.scenes) {
    // irregular scene lengths; each scene is a different synthetic source
    const lengths = [3.3, 11.7, 1.4, 6.1, 17.2, 2.2, 8.9, 4.6, 13.1, 0.9, 5.5, 9.8];
    const kinds = [
      `testsrc2=s=${w}x${h}:r=${fps}`,
      `mandelbrot=s=${w}x${h}:r=${fps}`,
      `smptehdbars=s=${w}x${h}:r=${fps}`,
      `life=s=${w}x${h}:r=${fps}:mold=10:ratio=0.5:death_color=#203040:life_color=#f0c040`,
      `testsrc=s=${w}x${h}:r=${fps}`,
      `cellauto=s=${w}x${h}:r=${fps}:rule=110`,
    ];
    let total = 0;
    const inputs: string[] = [];
    const labels: string[] = [];
    let i = 0;
    while (total < o.seconds) {
      const len = Math.min(lengths[i % lengths.length]!, o.seconds - total);
      inputs.push('-f', 'lavfi', '-t', len.toFixed(3), '-i', kinds[i % kinds.length]!);
      labels.push(`[${i}:v]format=yuv420p,setsar=1[v${i}]`);
      total += len;
      i++;
    }
    args.push(...inputs);
    const concat = labels.join(';') + ';' + labels.map((_, k) => `[v${k}]`).join('') + `concat=n=${labels.length}:v=1:a=0[vout]`;
    vf = ['-filter_complex', concat, '-map', '[vout]'];
    if (o.audio !== false) {
      args.push('-f', 'lavfi', '-t', String(o.seconds), '-i', `sine=f=330:r=48000`);
      vf.push('-map', `${labels.length}:a`);
    }
  } else {
    const src = o.noise
      ? `testsrc2=s=${w}x${h}:r=${fps},noise=alls=60:allf=t`
      : `testsrc2=s=${w}x${h}:r=${fps}`;
    args.push('-f', 'lavfi', '-t', String(o.seconds), '-i', src);
    if (o.audioTracks) {
      o.audioTracks.forEach((t, i) => {
        args.push('-f', 'lavfi', '-t', String(o.seconds), '-i', `sine=f=${440 + 220 * i}:r=48000`);
        vf.push('-map', `${i + 1}:a`);
        if (t.language) vf.push(`-metadata:s:a:${i}`, `language=${t.language}`);
        if (t.handler) vf.push(`-metadata:s:a:${i}`, `handler_name=${t.handler}`);
        if (t.title) vf.push(`-metadata:s:a:${i}`, `title=${t.title}`);
      });
      vf.unshift('-map', '0:v');
    } else if (o.audio !== false) args.push('-f', 'lavfi', '-t', String(o.seconds), '-i', 'sine=f=440:r=48000');
  }
  args.push(...vf);
  const codec = o.codec ?? 'h264';
  if (codec === 'h264') {
    args.push('-c:v', 'libx264', '-preset', o.noise ? 'ultrafast' : 'veryfast', '-pix_fmt', 'yuv420p');
    if (o.x264params) args.push('-x264-params', o.x264params);
  } else if (codec === 'vp9') {
    args.push('-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-row-mt', '1', '-pix_fmt', 'yuv420p');
    if (!o.bitrate) args.push('-b:v', '400k');
  } else {
    args.push('-c:v', 'libx265', '-preset', 'ultrafast', '-tag:v', 'hvc1', '-pix_fmt', 'yuv420p', '-x265-params', 'log-level=error');
  }
  if (o.bitrate) args.push('-b:v', o.bitrate, '-maxrate', o.bitrate, '-bufsize', o.bitrate);
  if (o.audio !== false) args.push('-c:a', 'aac', '-b:a', '64k', '-ac', '2');
  else args.push('-an');
  if (o.faststart) args.push('-movflags', '+faststart');
  if (o.extra) args.push(...o.extra);
  args.push('-threads', '2', path);
  await sh('ffmpeg', args);
  return path;
}

/** Loop a clip with -c copy until the output is at least `bytes` long (moov at the end). */
export async function loopToSize(src: string, dst: string, bytes: number): Promise<string> {
  const size = (await stat(src)).size;
  const loops = Math.ceil((bytes * 1.01) / size);
  await sh('ffmpeg', [...FF, '-stream_loop', String(loops - 1), '-i', src, '-c', 'copy', dst]);
  return dst;
}

export async function videoFrameCount(pathOrUrl: string): Promise<number> {
  const out = await sh('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', pathOrUrl]);
  return Number(out.trim().split('\n')[0]);
}

/** nb_read_packets per stream type, and packet data hashes (ffmpeg framemd5 with -c copy). */
export async function packetHashes(path: string, stream: 'v' | 'a', index = 0): Promise<string[]> {
  const out = await sh('ffmpeg', ['-v', 'error', '-i', path, '-map', `0:${stream}:${index}`, '-c', 'copy', '-f', 'framemd5', '-']);
  return out
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const cols = l.split(',').map((c) => c.trim());
      return `${cols[4]},${cols[5]}`; // size, hash
    });
}

/** Video keyframe times (seconds) as ffprobe sees them. */
export async function keyframeTimes(path: string): Promise<number[]> {
  const out = await sh('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=dts_time,flags', '-of', 'csv=p=0', path]);
  return out
    .split('\n')
    .filter((l) => l.includes('K'))
    .map((l) => Number(l.split(',')[0]));
}
