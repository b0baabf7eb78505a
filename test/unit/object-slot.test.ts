// Unit tests for src/object-slot.ts: a value kept on an object, as a WeakMap keeps one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ObjectSlot } from '../../src/object-slot.js';

describe('ObjectSlot', () => {
  it('keeps a value per object, set, read and replaced', () => {
    const slot = new ObjectSlot<object, number>('n');
    const a = {};
    const b = {};
    assert.equal(slot.get(a), undefined);
    slot.set(a, 1);
    slot.set(b, 2);
    assert.deepEqual([slot.get(a), slot.get(b)], [1, 2]);
    slot.set(a, 3);
    assert.deepEqual([slot.get(a), slot.get(b)], [3, 2]);
  });

  it('two slots on one object, even of one description, do not meet', () => {
    const first = new ObjectSlot<object, string>('same');
    const second = new ObjectSlot<object, string>('same');
    const owner = {};
    first.set(owner, 'first');
    assert.equal(second.get(owner), undefined);
    second.set(owner, 'second');
    assert.deepEqual([first.get(owner), second.get(owner)], ['first', 'second']);
  });

  it("leaves the object's own names and its JSON as they were", () => {
    const slot = new ObjectSlot<Record<string, unknown>, number>('hidden');
    const owner = { address: 'a@example.org' };
    slot.set(owner, 1);
    assert.deepEqual(Object.keys(owner), ['address']);
    assert.equal(JSON.stringify(owner), '{"address":"a@example.org"}');
  });
});
