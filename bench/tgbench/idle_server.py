"""An idle backend: accepts TCP connections on 127.0.0.1:PORT and holds them open.

    idle_server.py PORT

Used by the idle-memory measurement as the server behind the proxies: it
never writes, discards whatever it reads and closes a connection only when
the peer does. Stopped by its PID (SIGTERM) by the harness.
"""
import resource
import selectors
import socket
import sys


def main():
    port = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                for _ in range(256):
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # EMFILE: report and keep serving the others
                        print("idle_server: accept: %s" % e, flush=True)
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, "conn")
            else:
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(c)
                    c.close()


if __name__ == "__main__":
    main()
