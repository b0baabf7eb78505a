// Whether a directory lives on a network file system (NFS, SMB/CIFS, FUSE mounts such as
// sshfs, cluster file systems), read from statfs(2)'s type. Such storage can stall for as long
// as its server or network does, so a write there must never hold the event loop (see
// LocalDelivery's writeInPlace).
import { statfsSync } from 'node:fs';

/** f_type values of the network and cluster file systems Linux names in linux/magic.h. */
const NETWORK_FILESYSTEM_TYPES: ReadonlyMap<number, string> = new Map([
  [0x6969, 'nfs'],
  [0x517b, 'smb'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x65735546, 'fuse'],
  [0x00c36400, 'ceph'],
  [0x5346414f, 'afs'],
  [0x01021997, '9p'],
  [0x73757245, 'coda'],
  [0x7461636f, 'ocfs2'],
  [0x01161970, 'gfs2'],
  [0x0bd00bd0, 'lustre'],
]);

/** The name of the network file system a statfs(2) type denotes, or null for any other. */
export function networkFilesystemName(type: number): string | null {
  return NETWORK_FILESYSTEM_TYPES.get(type >>> 0) ?? null;
}

/** Whether `path` is on local storage; false too when it cannot be told (statfs failed). */
export function isOnLocalFilesystem(path: string): boolean {
  try {
    return networkFilesystemName(statfsSync(path).type) === null;
  } catch {
    return false;
  }
}
