// Matches client addresses against lists of networks from the config (mynetworks,
// plaintext_auth_networks), IPv4, IPv6 and IPv4-mapped IPv6 alike.
import { BlockList } from 'node:net';
import { parseNetwork } from './units.js';

export type NetworkMatcher = (ip: string) => boolean;

export function networkMatcher(networks: string[]): NetworkMatcher {
  const list = new BlockList();
  for (const text of networks) {
    const network = parseNetwork(text);
    if (!network) throw new Error(`not a network: ${JSON.stringify(text)}`);
    list.addSubnet(network.address, network.prefix, network.family);
  }
  // answers by address, kept for the addresses seen last: every command of a session asks again
  const answers = new Map<string, boolean>();
  return (ip) => {
    let answer = answers.get(ip);
    if (answer === undefined) {
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
      answer = mapped ? list.check(mapped[1]!, 'ipv4') : list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
      if (answers.size >= MAX_REMEMBERED) answers.clear();
      answers.set(ip, answer);
    }
    return answer;
  };
}

/** Client addresses whose answer a matcher keeps. */
const MAX_REMEMBERED = 4096;
