// Types for the part of mailauth that sign.ts builds on: its DKIM signer, a Writable that takes
// the message and, once finished, holds the DKIM-Signature fields (mailauth ships no types for it).
declare module 'mailauth/lib/dkim/dkim-signer.js' {
  import { Writable } from 'node:stream';

  export interface ParsedHeader {
    /** the field name, lowercase */
    key: string;
    /** the field name as written; h= is made of these */
    casedKey: string;
    line: Buffer;
  }

  export interface SignatureData {
    signingDomain: string;
    selector: string;
    /** PEM */
    privateKey: string;
    algorithm: string;
  }

  export interface DkimSignerOptions {
    canonicalization: string;
    /** field names joined by ":" */
    headerList: string;
    signTime: Date;
    signatureData: SignatureData[];
  }

  export class DkimSigner extends Writable {
    constructor(options: DkimSignerOptions);
    /** one folded `DKIM-Signature: ...` field per signature made, without the final CRLF */
    signatureHeaders: string[];
    errors: { selector?: string; signingDomain?: string; err: Error }[];
    messageHeaders(headers: { parsed: ParsedHeader[] }): Promise<void>;
  }
}
