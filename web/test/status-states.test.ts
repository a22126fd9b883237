import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { partsFromStates } from '../src/lib/api.ts';

describe('status polled as one letter per part', () => {
  const times = [
    { start: 0, duration: 2 },
    { start: 2, duration: 2.5 },
    { start: 4.5, duration: 2 },
  ];

  it('puts each letter on the times of the full answer', () => {
    assert.deepEqual(partsFromStates(times, 'Pua'), [
      { start: 0, duration: 2, state: 'published' },
      { start: 2, duration: 2.5, state: 'uploaded' },
      { start: 4.5, duration: 2, state: 'assigned' },
    ]);
    assert.deepEqual(
      partsFromStates(times, 'fpP')?.map((s) => s.state),
      ['failed', 'pending', 'published'],
    );
  });

  it('refuses an answer that does not fit the times (another part count, or an older server)', () => {
    assert.equal(partsFromStates(times, 'PP'), null);
    assert.equal(partsFromStates(times, 'PPPP'), null);
    assert.equal(partsFromStates(times, undefined), null);
  });
});
