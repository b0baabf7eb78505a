// src/queue/collections.ts: the FIFO keeps order across its compaction; the heap pops by key,
// whatever the push order, and drains.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Fifo, MinHeap } from '../../src/queue/collections.js';

test('Fifo returns items in push order, interleaved with shifts, across its compaction', () => {
  const fifo = new Fifo<number>();
  const expected: number[] = [];
  const got: number[] = [];
  let next = 0;
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 100; i++) {
      fifo.push(next);
      expected.push(next++);
    }
    for (let i = 0; i < 70; i++) got.push(fifo.shift()!);
  }
  while (fifo.length > 0) got.push(fifo.shift()!);
  assert.deepEqual(got, expected);
  assert.equal(fifo.shift(), undefined);
});

test('MinHeap pops in key order (property), peekKey is the smallest, drain empties it', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 200 }), (keys) => {
      const heap = new MinHeap<number>();
      for (const key of keys) heap.push(key, key);
      const popped: number[] = [];
      while (heap.size > 0) {
        const key = heap.peekKey();
        const item = heap.pop()!;
        assert.equal(key, item, 'peekKey names the item pop returns');
        popped.push(item);
      }
      assert.deepEqual(
        popped,
        [...keys].sort((a, b) => a - b),
      );
      assert.equal(heap.peekKey(), Infinity);
    }),
  );
  const heap = new MinHeap<string>();
  heap.push(3, 'c');
  heap.push(1, 'a');
  assert.deepEqual(heap.drain().sort(), ['a', 'c']);
  assert.equal(heap.size, 0);
});

test('MinHeap.retain keeps only the accepted items, still in key order (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 200 }), (keys) => {
      const heap = new MinHeap<number>();
      for (const key of keys) heap.push(key, key);
      heap.retain((key) => key % 3 !== 0);
      const popped: number[] = [];
      while (heap.size > 0) popped.push(heap.pop()!);
      assert.deepEqual(
        popped,
        keys.filter((key) => key % 3 !== 0).sort((a, b) => a - b),
      );
    }),
  );
});
