// Where mail for an address goes: the local users an address (or the alias it names) delivers
// to, and the remote addresses it forwards to. Shared by the SMTP recipient check (which adds
// its own refusals on top) and by mail mailsrv injects itself (bounces, `mailsrv sendmail`:
// the daemon hands routeAddresses to the queue's injector).
import { qualify, splitAddress } from '../message/address.js';
import type { ResolvedRecipient } from '../message/envelope.js';

export interface RecipientDirectory {
  /** local part → local users and remote forwards, or null when nobody has that name */
  resolve(localPart: string): Promise<{ local: string[]; remote: string[] } | null>;
}

export interface RoutingContext {
  hostname: string;
  isLocalDomain: (domain: string) => boolean;
  directory: RecipientDirectory;
}

/** One delivery per local user and per remote forward of a resolved local address. */
export function deliveriesFor(address: string, resolution: { local: string[]; remote: string[] }): ResolvedRecipient[] {
  return [
    ...resolution.local.map((user): ResolvedRecipient => ({ address, target: { kind: 'local', user } })),
    ...resolution.remote.map(
      (remote): ResolvedRecipient => ({ address: remote, target: { kind: 'remote', forwarded: true } }),
    ),
  ];
}

/**
 * Routes an address mailsrv itself sends to (no relay or existence check: that was done when
 * the mail was accepted). A bare name is local. A local address nobody has still gets a local
 * delivery, which fails for good, so the sender gets a bounce instead of silence.
 */
async function routeAddress(address: string, context: RoutingContext): Promise<ResolvedRecipient[]> {
  const full = qualify(address, context.hostname);
  const { localPart, domain } = splitAddress(full)!;
  if (!context.isLocalDomain(domain)) return [{ address: full, target: { kind: 'remote' } }];
  const resolution = await context.directory.resolve(localPart);
  if (resolution === null) return [{ address: full, target: { kind: 'local', user: localPart.toLowerCase() } }];
  return deliveriesFor(full, resolution);
}

/** Every delivery a list of addresses leads to, each once. */
export async function routeAddresses(addresses: string[], context: RoutingContext): Promise<ResolvedRecipient[]> {
  const routed = await Promise.all(addresses.map((address) => routeAddress(address, context)));
  return uniqueDeliveries(routed.flat());
}

/** The same delivery requested twice (two RCPTs naming one user) happens once. */
export function uniqueDeliveries(recipients: ResolvedRecipient[]): ResolvedRecipient[] {
  if (recipients.length < 2) return recipients;
  const seen = new Set<string>();
  return recipients.filter((r) => {
    const key = r.target.kind === 'local' ? `local:${r.target.user}` : `remote:${r.address.toLowerCase()}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
