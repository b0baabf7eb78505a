// A tiny authoritative DNS server for tests (dns2 over UDP and TCP, one port on 127.0.0.1):
// answers MX, A, AAAA and TXT from a zone the test can change while it runs; unknown names are
// NXDOMAIN, `rcode` forces an error (2 = SERVFAIL), `silent` never answers. An answer too big
// for UDP is sent truncated there, and whole over TCP (as resolvers then ask). Point
// `dns_servers` at `server`.
import type { Socket } from 'node:net';
import dns2 from 'dns2';
import { freePort } from '../e2e/harness/net.js';

const { Packet } = dns2;

export interface ZoneEntry {
  mx?: [priority: number, exchange: string][];
  a?: string[];
  aaaa?: string[];
  /** one entry per TXT record; a record given as several strings is sent as those character-strings */
  txt?: (string | string[])[];
  rcode?: number;
  silent?: boolean;
}

export type Zone = Record<string, ZoneEntry>;

/** The classic DNS limit of an answer over UDP (without EDNS): bigger ones are truncated there. */
const UDP_ANSWER_LIMIT = 512;

export interface DnsZoneServer {
  /** "127.0.0.1:PORT", for dns_servers */
  server: string;
  /** every question asked, as "name/TYPE" */
  queries: string[];
  zone: Zone;
  close(): Promise<void>;
}

export async function startDnsZone(zone: Zone): Promise<DnsZoneServer> {
  const queries: string[] = [];
  const handle =
    (overTcp: boolean): dns2.DnsHandler =>
    (request, send) => {
      // TCP asks again what UDP answered truncated: the question is counted once
      if (!overTcp) queries.push(`${request.questions[0]!.name.toLowerCase()}/${request.questions[0]!.type}`);
      const response = Packet.createResponseFromRequest(request);
      const question = request.questions[0]!;
      const name = question.name.toLowerCase();
      const entry = zone[name];
      if (entry?.silent) return;
      if (!entry) response.header.rcode = 3;
      else if (entry.rcode !== undefined) response.header.rcode = entry.rcode;
      else {
        const answer = (record: Partial<dns2.Packet.Resource>) =>
          response.answers.push(Packet.createResourceFromQuestion(question, { ttl: 60, ...record }));
        if (question.type === Packet.TYPE.MX)
          for (const [priority, exchange] of entry.mx ?? []) answer({ priority, exchange });
        if (question.type === Packet.TYPE.A) for (const address of entry.a ?? []) answer({ address });
        if (question.type === Packet.TYPE.AAAA) for (const address of entry.aaaa ?? []) answer({ address });
        if (question.type === Packet.TYPE.TXT) for (const data of entry.txt ?? []) answer({ data });
      }
      if (!overTcp && response.toBuffer().length > UDP_ANSWER_LIMIT) {
        response.answers = [];
        response.header.tc = 1;
      }
      void send(response);
    };
  const tcp = dns2.createTCPServer(handle(true));
  // a resolver may keep its TCP connection open: close() ends them rather than wait
  const connections = new Set<Socket>();
  tcp.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  // UDP and TCP on one port, one that no other test takes meanwhile (freePort)
  const port = await freePort();
  const udp = dns2.createUDPServer(handle(false));
  await udp.listen(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(port, '127.0.0.1', () => {
      tcp.off('error', reject);
      resolve();
    });
  });
  return {
    server: `127.0.0.1:${udp.address().port}`,
    queries,
    zone,
    close: async () => {
      await udp.close();
      const closed = new Promise((resolve) => tcp.close(resolve));
      for (const socket of connections) socket.destroy();
      await closed;
    },
  };
}
