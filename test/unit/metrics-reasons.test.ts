// Unit: the `reason` label of mailsrv_messages_rejected_total: each refusal mailsrv answers
// (the replies of smtp/policy.ts and smtp/server.ts) maps to one short name from a fixed set.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rejectReason } from '../../src/metrics/metrics.js';

test('each refusal gets a reason from a small fixed set', () => {
  const cases: [number, string, string][] = [
    [554, '5.7.1 <a@elsewhere.test>: Relay access denied', 'relay_denied'],
    [
      550,
      '5.1.1 <x@example.test>: Recipient address rejected: User unknown in local recipient table',
      'unknown_recipient',
    ],
    [552, '5.2.2 <a@example.test>: Mailbox full', 'mailbox_full'],
    [552, '5.3.4 Message size exceeds fixed limit of 100 bytes', 'message_too_big'],
    [554, '5.4.6 Too many hops (31 Received headers): mail forwarding loop', 'mail_loop'],
    [530, '5.7.0 Authentication required', 'auth_required'],
    [553, '5.7.1 <b@example.test>: Sender address rejected: not owned by user a', 'policy'],
    [550, '5.7.23 SPF validation failed', 'spf'],
    [501, '5.1.3 Bad recipient address syntax', 'bad_syntax'],
    [501, '5.1.7 Bad sender address syntax', 'bad_syntax'],
    [555, '5.5.4 Unsupported option: FOO', 'bad_syntax'],
    [452, '4.3.1 Insufficient system storage', 'temporary'],
    [451, '4.3.0 Temporary lookup failure', 'temporary'],
    [554, 'no enhanced code here', 'other'],
  ];
  for (const [responseCode, message, reason] of cases) {
    assert.equal(rejectReason({ responseCode, message }), reason, message);
  }
});
