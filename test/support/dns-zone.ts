// A tiny authoritative DNS server for tests (dns2 over UDP on 127.0.0.1): answers MX, A, AAAA
// and TXT from a zone the test can change while it runs; unknown names are NXDOMAIN, `rcode`
// forces an error (2 = SERVFAIL), `silent` never answers. Point `dns_servers` at `server`.
import dns2 from 'dns2';

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
  const udp = dns2.createUDPServer((request, send) => {
    const response = Packet.createResponseFromRequest(request);
    const question = request.questions[0]!;
    const name = question.name.toLowerCase();
    queries.push(`${name}/${question.type}`);
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
    void send(response);
  });
  await udp.listen(0, '127.0.0.1');
  return {
    server: `127.0.0.1:${udp.address().port}`,
    queries,
    zone,
    close: async () => {
      await udp.close();
    },
  };
}
