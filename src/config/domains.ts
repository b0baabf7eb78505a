// Which domains are local: the configured ones, the hostname and "localhost".
import type { Config } from './schema.js';

export type DomainMatcher = (domain: string) => boolean;

export function localDomainMatcher(config: Pick<Config, 'hostname' | 'domains'>): DomainMatcher {
  const local = new Set([config.hostname, 'localhost', ...config.domains].map((d) => d.toLowerCase()));
  return (domain) => local.has(domain.toLowerCase());
}
