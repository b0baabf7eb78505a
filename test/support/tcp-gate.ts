// A TCP forwarder on loopback that a test controls: "hold" keeps new connections waiting (a
// slow server, so the test can act before an answer comes), "open" forwards them to the target
// (which may change, e.g. to a restarted server), "refuse" closes them at once (a server that
// is down). Whatever TLS runs over it passes through untouched.
import { connect, createServer, type Server, type Socket } from 'node:net';

export type GateState = 'hold' | 'open' | 'refuse';

export class TcpGate {
  private held: Socket[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private state: GateState,
    private targetPort: number,
  ) {}

  static async start(targetPort: number, state: GateState): Promise<TcpGate> {
    const server = createServer();
    const gate = new TcpGate(server, state, targetPort);
    server.on('connection', (socket) => gate.accept(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return gate;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  /** Sets what happens to connections from now on; connections held so far follow it. */
  set(state: GateState, targetPort = this.targetPort): void {
    this.state = state;
    this.targetPort = targetPort;
    if (state === 'hold') return;
    const held = this.held;
    this.held = [];
    for (const socket of held) this.accept(socket);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    if (this.state === 'hold') this.held.push(socket);
    else if (this.state === 'refuse') socket.destroy();
    else {
      const upstream = connect(this.targetPort, '127.0.0.1');
      this.sockets.add(upstream);
      upstream.once('close', () => {
        this.sockets.delete(upstream);
        socket.destroy();
      });
      upstream.on('error', () => upstream.destroy());
      socket.once('close', () => upstream.destroy());
      socket.pipe(upstream);
      upstream.pipe(socket);
    }
  }
}
