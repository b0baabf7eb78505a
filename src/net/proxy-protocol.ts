// The PROXY protocol header (HAProxy's "proxy-protocol.txt", versions 1 and 2) that a load
// balancer sends before anything else on a connection, naming the client it accepted: parsed
// from the bytes received so far, with every length bounded. Only what mailsrv needs is read:
// TCP over IPv4 or IPv6 (a source address and port), UNKNOWN (v1) and UNSPEC (v2), and v2's
// LOCAL command (the balancer's own health check); v2's TLVs are skipped. The socket side is
// in proxied-client.ts (README, "More than one node").
import { isIPv4, isIPv6 } from 'node:net';

/** The client a header names. */
export interface ProxiedSource {
  address: string;
  port: number;
}

export type ProxyParse =
  /** the bytes so far are the start of a valid header: wait for more */
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  /**
   * a whole header of `length` bytes; `source` null: keep the connection's own peer (v2 LOCAL,
   * v1 UNKNOWN, v2 UNSPEC)
   */
  | { kind: 'header'; version: 1 | 2; length: number; source: ProxiedSource | null };

/** v1: the longest line, CRLF included (the protocol's own limit). */
export const V1_MAX_LENGTH = 107;
/** v2: the longest header accepted, TLVs included (addresses need at most 16 + 36). */
export const V2_MAX_LENGTH = 4096;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_LENGTH = 16;
/** v2 address block lengths: source and destination address, then source and destination port */
const V2_INET_LENGTH = 12;
const V2_INET6_LENGTH = 36;

/** Parses the header at the start of `received` (all bytes the connection has sent so far). */
export function parseProxyHeader(received: Buffer): ProxyParse {
  if (startsLike(received, V2_SIGNATURE)) {
    return received.length < V2_SIGNATURE.length ? { kind: 'incomplete' } : parseV2(received);
  }
  if (startsLike(received, V1_PREFIX)) {
    return received.length < V1_PREFIX.length ? { kind: 'incomplete' } : parseV1(received);
  }
  return { kind: 'invalid', reason: 'not a PROXY protocol header' };
}

/** `received` and `prefix` agree on their common length. */
function startsLike(received: Buffer, prefix: Buffer): boolean {
  const length = Math.min(received.length, prefix.length);
  return received.subarray(0, length).equals(prefix.subarray(0, length));
}

/** "PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>\r\n", or "PROXY UNKNOWN ...\r\n". */
function parseV1(received: Buffer): ProxyParse {
  const window = received.subarray(0, V1_MAX_LENGTH);
  const end = window.indexOf('\r\n', 0, 'latin1');
  if (end < 0) {
    if (received.length >= V1_MAX_LENGTH) return { kind: 'invalid', reason: 'v1 line longer than 107 bytes' };
    if (window.includes(0x0a)) return { kind: 'invalid', reason: 'v1 line not ended by CRLF' };
    return { kind: 'incomplete' };
  }
  const length = end + 2;
  const line = window.toString('latin1', 0, end);
  const fields = line.split(' ');
  if (fields[1] === 'UNKNOWN') return { kind: 'header', version: 1, length, source: null };
  if (fields.length !== 6) return { kind: 'invalid', reason: 'v1 line does not have 6 fields' };
  const [, family, source, destination, sourcePort, destinationPort] = fields as [string, ...string[]];
  const isFamily = family === 'TCP4' ? isIPv4 : family === 'TCP6' ? isIPv6 : null;
  if (isFamily === null) return { kind: 'invalid', reason: `v1 protocol ${JSON.stringify(family)} unknown` };
  if (!isFamily(source!) || !isFamily(destination!))
    return { kind: 'invalid', reason: `v1 addresses are not ${family} addresses` };
  const port = portNumber(sourcePort!);
  if (port === null || portNumber(destinationPort!) === null) return { kind: 'invalid', reason: 'v1 port invalid' };
  return { kind: 'header', version: 1, length, source: { address: source!.toLowerCase(), port } };
}

/** A decimal port, 0 to 65535, without leading zeros. */
function portNumber(text: string): number | null {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return null;
  const port = Number(text);
  return port <= 65535 ? port : null;
}

/** The binary header: signature, version and command, family and protocol, length, addresses, TLVs. */
function parseV2(received: Buffer): ProxyParse {
  if (received.length < V2_FIXED_LENGTH) return { kind: 'incomplete' };
  const versionCommand = received[12]!;
  if (versionCommand >> 4 !== 2) return { kind: 'invalid', reason: `v2 version ${versionCommand >> 4} unknown` };
  const command = versionCommand & 0x0f;
  if (command > 1) return { kind: 'invalid', reason: `v2 command ${command} unknown` };
  const familyProtocol = received[13]!;
  const addressLength = received.readUInt16BE(14);
  const length = V2_FIXED_LENGTH + addressLength;
  if (length > V2_MAX_LENGTH) return { kind: 'invalid', reason: `v2 header of ${length} bytes is too long` };
  // LOCAL: the balancer speaks for itself; whatever the address block says is skipped
  const local = command === 0;
  const family = familyProtocol >> 4;
  const needed = family === 1 ? V2_INET_LENGTH : family === 2 ? V2_INET6_LENGTH : 0;
  if (!local && family !== 0) {
    if (family > 2 || (familyProtocol & 0x0f) !== 1)
      return { kind: 'invalid', reason: `v2 family/protocol 0x${familyProtocol.toString(16)} is not TCP` };
    if (addressLength < needed) return { kind: 'invalid', reason: 'v2 address block too short' };
  }
  if (received.length < length) return { kind: 'incomplete' };
  if (local || family === 0) return { kind: 'header', version: 2, length, source: null };
  const block = received.subarray(V2_FIXED_LENGTH, V2_FIXED_LENGTH + needed);
  const source =
    family === 1
      ? { address: [...block.subarray(0, 4)].join('.'), port: block.readUInt16BE(8) }
      : { address: ipv6Text(block.subarray(0, 16)), port: block.readUInt16BE(32) };
  return { kind: 'header', version: 2, length, source };
}

/** RFC 5952 text of a 16-byte IPv6 address (an IPv4-mapped one as ::ffff:a.b.c.d). */
function ipv6Text(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff)
    return `::ffff:${[...bytes.subarray(12, 16)].join('.')}`;
  // the longest run of two or more zero groups becomes "::" (the first such run on a tie)
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; ) {
    let end = start;
    while (end < 8 && groups[end] === 0) end += 1;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end === start ? start + 1 : end;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
