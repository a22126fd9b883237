import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { choosePlayer } from '../src/lib/player-choice.ts';

describe('which player a browser gets', () => {
  it('MSE or ManagedMediaSource (iOS 17.1+) → dash.js', () => {
    assert.equal(choosePlayer({ mse: true, mms: false, nativeHls: false }, null), 'dash');
    assert.equal(choosePlayer({ mse: false, mms: true, nativeHls: true }, null), 'dash');
    assert.equal(choosePlayer({ mse: true, mms: true, nativeHls: true }, null), 'dash');
  });

  it('no MSE but native HLS (iPhones before iOS 17.1) → the native HLS player', () => {
    assert.equal(choosePlayer({ mse: false, mms: false, nativeHls: true }, null), 'native');
  });

  it('neither → dash.js, which tells the viewer the browser cannot play it', () => {
    assert.equal(choosePlayer({ mse: false, mms: false, nativeHls: false }, null), 'dash');
  });

  it('?player= overrides the choice; an unknown value is ignored', () => {
    assert.equal(choosePlayer({ mse: true, mms: false, nativeHls: false }, 'native'), 'native');
    assert.equal(choosePlayer({ mse: false, mms: false, nativeHls: true }, 'hls'), 'hls');
    assert.equal(choosePlayer({ mse: false, mms: false, nativeHls: true }, 'flash'), 'native');
  });
});
