# The RPyC peer's server: RPyC classic (ClassicService) on 127.0.0.1, a thread per
# connection. Prints its port, then serves until killed or until stdin closes.
import sys
import threading
from rpyc.core.service import ClassicService
from rpyc.utils.server import ThreadedServer

server = ThreadedServer(ClassicService, hostname='127.0.0.1', port=0, reuse_addr=True)
print(server.listener.getsockname()[1], flush=True)


def watch_stdin():
    sys.stdin.read()
    server.close()


threading.Thread(target=watch_stdin, daemon=True).start()
server.start()
