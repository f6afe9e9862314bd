"""Opens N idle TCP connections to 127.0.0.1:PORT and holds them until stdin closes.

    idle_clients.py PORT N

Connects in batches (so the listener's backlog never overflows), checks
every connect, prints "connected N" once all are up, then waits for EOF on
stdin and exits, which closes them all. Exits 1 with a message if a connect
fails or does not complete within 30 s.
"""
import resource
import select
import socket
import sys
import time

BATCH = 200


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    while len(held) < n:
        batch = []
        for _ in range(min(BATCH, n - len(held))):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            batch.append(s)
        pending = {s.fileno(): s for s in batch}
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLOUT)
        deadline = time.monotonic() + 30
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                print("idle_clients: %d connects did not complete" % len(pending), flush=True)
                sys.exit(1)
            for fd, _ in poller.poll(left * 1000):
                s = pending.pop(fd)
                poller.unregister(fd)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    print("idle_clients: connect #%d: errno %d" % (len(held), err), flush=True)
                    sys.exit(1)
        held.extend(batch)
        time.sleep(0.01)
    print("connected %d" % len(held), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
