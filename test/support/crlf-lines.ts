// Reading a server's CRLF-terminated lines from a raw socket, one at a time, for unit tests that
// talk to a protocol object over a real loopback connection.
import type { Socket } from 'node:net';

/** Returns a function that resolves to the next line the server sent (without its CRLF). */
export function crlfLineReader(socket: Socket): () => Promise<string> {
  let buffered = '';
  const lines: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  socket.setEncoding('latin1').on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\r\n'); nl !== -1; nl = buffered.indexOf('\r\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 2);
      const waiter = waiting.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  return () => {
    const line = lines.shift();
    return line === undefined ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(line);
  };
}
