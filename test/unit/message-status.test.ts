// DeliveryStatus: codes are checked when a status is made, a remote reply gives its code (or one
// of its class), deferral makes a code 4.x.x, and the DSN fields and one-line text it gives.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  deferred,
  delivered,
  describeStatus,
  isDelivered,
  permanent,
  statusFromLegacyText,
  statusFromReply,
  temporary,
  toDsnFields,
} from '../../src/message/status.js';

test('a status refuses a malformed enhanced code', () => {
  assert.throws(() => temporary('bogus\r\nX: y', 'text'), RangeError);
  assert.throws(() => permanent('3.1.1', 'text'), RangeError);
});

test('a remote reply gives its own code when it agrees with the reply code, else X.0.0', () => {
  assert.deepEqual(statusFromReply('550 5.1.1 <bob@remote.test>: User unknown', 'permanent', 'mx.test'), {
    code: '5.1.1',
    permanent: true,
    text: '<bob@remote.test>: User unknown',
    remote: { host: 'mx.test', reply: '550 5.1.1 <bob@remote.test>: User unknown' },
  });
  assert.equal(statusFromReply('451 5.1.1 mixed up', 'temporary').code, '4.0.0');
  assert.equal(statusFromReply('554 go away', 'temporary').code, '5.0.0');
  assert.equal(statusFromReply('garbage', 'permanent').code, '5.0.0');
  const ok = statusFromReply('whatever the server said', 'sent');
  assert.ok(isDelivered(ok));
});

test('deferral, one-line text and DSN fields', () => {
  assert.deepEqual(deferred(permanent('5.7.8', 'login refused')), {
    code: '4.7.8',
    permanent: false,
    text: 'login refused',
  });
  assert.equal(describeStatus(temporary('4.2.2', 'mailbox of alice is full')), '4.2.2 mailbox of alice is full');
  assert.equal(describeStatus(statusFromReply('550 5.1.1 no', 'permanent', 'mx')), '550 5.1.1 no');
  assert.deepEqual(toDsnFields(temporary('4.2.2', 'full')), {
    status: '4.2.2',
    diagnostic: { type: 'X-mailsrv', text: '4.2.2 full' },
  });
  assert.deepEqual(toDsnFields(statusFromReply('550 5.1.1 no', 'permanent', 'mx')), {
    status: '5.1.1',
    remoteMta: 'mx',
    diagnostic: { type: 'smtp', text: '550 5.1.1 no' },
  });
  assert.ok(isDelivered(delivered()));
});

test('error text stored by an earlier version becomes a status', () => {
  assert.deepEqual(statusFromLegacyText('4.4.1 connect to mx[192.0.2.1]:25: ECONNREFUSED', false), {
    code: '4.4.1',
    permanent: false,
    text: 'connect to mx[192.0.2.1]:25: ECONNREFUSED',
  });
  assert.deepEqual(statusFromLegacyText('something odd', true), {
    code: '5.0.0',
    permanent: true,
    text: 'something odd',
  });
});
