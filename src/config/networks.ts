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
  return (ip) => {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    if (mapped) return list.check(mapped[1]!, 'ipv4');
    return list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
  };
}
