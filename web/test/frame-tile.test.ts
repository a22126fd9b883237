import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sampleTile, type FrameBytes } from '../src/lib/frame-tile.ts';

/** An I420 frame whose left half is one colour and right half another (limited-range BT.709). */
function i420(w: number, h: number, left: [number, number, number], right: [number, number, number]): FrameBytes {
  const ySize = w * h;
  const cw = w / 2;
  const ch = h / 2;
  const data = new Uint8Array(ySize + 2 * cw * ch);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = (x < w / 2 ? left : right)[0];
  for (let y = 0; y < ch; y++)
    for (let x = 0; x < cw; x++) {
      const c = x < cw / 2 ? left : right;
      data[ySize + y * cw + x] = c[1];
      data[ySize + cw * ch + y * cw + x] = c[2];
    }
  return { format: 'I420', width: w, height: h, data, planes: [{ offset: 0, stride: w }, { offset: ySize, stride: cw }, { offset: ySize + cw * ch, stride: cw }], matrix: 'bt709', fullRange: false };
}

const px = (img: Uint8ClampedArray, w: number, x: number, y: number): number[] => Array.from(img.slice((y * w + x) * 4, (y * w + x) * 4 + 4));
const near = (a: number[], b: number[], tol = 3): boolean => a.every((v, i) => Math.abs(v - b[i]!) <= tol);

describe('frame tiles (VideoFrame planes sampled without a canvas)', () => {
  it('limited-range BT.709 YCbCr comes out as the RGB it encodes: white, black, red', () => {
    // BT.709 limited: white (235,128,128), black (16,128,128), red (63,102,240)
    for (const [ycc, rgb] of [
      [[235, 128, 128], [255, 255, 255, 255]],
      [[16, 128, 128], [0, 0, 0, 255]],
      [[63, 102, 240], [255, 0, 0, 255]],
    ] as const) {
      const img = sampleTile(i420(64, 36, [...ycc], [...ycc]), 16, 9);
      assert.ok(near(px(img, 16, 5, 5), [...rgb]), `${ycc} → ${px(img, 16, 5, 5)}, want ${rgb}`);
    }
  });

  it('keeps the picture’s layout: left half and right half land in the tile’s halves', () => {
    const img = sampleTile(i420(1280, 720, [235, 128, 128], [16, 128, 128]), 160, 90);
    assert.ok(near(px(img, 160, 10, 45), [255, 255, 255, 255]), 'left is white');
    assert.ok(near(px(img, 160, 150, 45), [0, 0, 0, 255]), 'right is black');
  });

  it('averages over the block each output pixel covers (a fine checkerboard turns grey, not black or white)', () => {
    const w = 64;
    const h = 64;
    const f = i420(w, h, [16, 128, 128], [16, 128, 128]);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) f.data[y * w + x] = (x + y) % 2 ? 235 : 16;
    const img = sampleTile(f, 8, 8);
    const [r] = px(img, 8, 3, 3);
    assert.ok(r! > 100 && r! < 155, `checkerboard sampled to ${r}`);
  });

  it('reads NV12 (interleaved chroma) and BGRA the same as I420', () => {
    const w = 32;
    const h = 16;
    const ySize = w * h;
    const nv12 = new Uint8Array(ySize + ySize / 2);
    nv12.fill(63, 0, ySize);
    for (let i = ySize; i < nv12.length; i += 2) {
      nv12[i] = 102;
      nv12[i + 1] = 240;
    }
    const a = sampleTile({ format: 'NV12', width: w, height: h, data: nv12, planes: [{ offset: 0, stride: w }, { offset: ySize, stride: w }], matrix: 'bt709', fullRange: false }, 4, 2);
    assert.ok(near(px(a, 4, 1, 1), [255, 0, 0, 255]), `NV12 red → ${px(a, 4, 1, 1)}`);
    const bgra = new Uint8Array(w * h * 4);
    for (let i = 0; i < bgra.length; i += 4) bgra.set([10, 20, 200, 255], i);
    const b = sampleTile({ format: 'BGRA', width: w, height: h, data: bgra, planes: [{ offset: 0, stride: w * 4 }] }, 4, 2);
    assert.deepEqual(px(b, 4, 2, 1), [200, 20, 10, 255]);
  });

  it('respects strides wider than the visible width (padding is never sampled)', () => {
    const w = 16;
    const h = 8;
    const stride = 32;
    const data = new Uint8Array(stride * h + 2 * (stride / 2) * (h / 2)).fill(0); // padding and chroma 0 would read as green
    for (let y = 0; y < h; y++) data.fill(235, y * stride, y * stride + w);
    const c0 = stride * h;
    data.fill(128, c0);
    const img = sampleTile({ format: 'I420', width: w, height: h, data, planes: [{ offset: 0, stride }, { offset: c0, stride: stride / 2 }, { offset: c0 + (stride / 2) * (h / 2), stride: stride / 2 }] }, 4, 2);
    for (let x = 0; x < 4; x++) assert.ok(near(px(img, 4, x, 1), [255, 255, 255, 255]), `column ${x}: ${px(img, 4, x, 1)}`);
  });
});
